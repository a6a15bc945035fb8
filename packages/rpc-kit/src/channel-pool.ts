import { type ChannelOptions, Client, credentials } from "@grpc/grpc-js";

/**
 * One grpc-js channel per target per process, shared by every client of that
 * target and closed once at shutdown. A channel per call is the classic
 * "too many open files" outage; this pool makes the right thing the default.
 */

/** Channel options applied to every pooled channel (gRPC core names). */
export const DEFAULT_CHANNEL_OPTIONS: Readonly<ChannelOptions> = Object.freeze({
  // Balance over every address the name resolves to, not just the first.
  "grpc.service_config": JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
  // Detect dead peers on idle-looking connections within ~40 s.
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  // Reconnect quickly to a restarted upstream: 250 ms, growing to at most 2 s
  // (gRPC core defaults: 1 s to 120 s).
  "grpc.initial_reconnect_backoff_ms": 250,
  "grpc.max_reconnect_backoff_ms": 2_000,
  // 4 MiB, as the servers accept.
  "grpc.max_receive_message_length": 4 * 1024 * 1024,
  "grpc.max_send_message_length": 4 * 1024 * 1024,
  "grpc.primary_user_agent": "rpc-kit",
});

export class ChannelPool {
  private readonly channels = new Map<string, Client>();

  private readonly options: ChannelOptions;

  constructor(options: ChannelOptions = DEFAULT_CHANNEL_OPTIONS) {
    this.options = options;
  }

  /** The channel for `target`, created on first use. */
  get(target: string): Client {
    let channel = this.channels.get(target);
    if (channel === undefined) {
      channel = new Client(target, credentials.createInsecure(), this.options);
      this.channels.set(target, channel);
    }
    return channel;
  }

  /** Targets with an open channel. */
  targets(): string[] {
    return [...this.channels.keys()];
  }

  /** Closes every channel; calls in flight are cancelled by grpc-js. */
  close(): void {
    for (const channel of this.channels.values()) channel.close();
    this.channels.clear();
  }
}

/** The process-wide pool used by `createClient` unless one is passed; `serve()` closes it at shutdown. */
export const defaultChannelPool = new ChannelPool();
