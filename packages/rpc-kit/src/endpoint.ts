import { type ChannelCredentials, type ChannelOptions, Client, connectivityState, credentials } from "@grpc/grpc-js";
import type { EndpointAddress } from "./discovery.ts";

/**
 * One upstream endpoint (an address): one grpc-js channel to it, whose
 * connection grpc-js keeps up (keepalive, reconnect with backoff, transparent
 * retry of refused streams), plus what balancing needs to know: its
 * connectivity, its in-flight calls, and whether it is ejected.
 */

/** Outlier ejection: consecutive Unavailable answers that eject an endpoint. */
export const EJECTION_THRESHOLD = 5;
/** First ejection lasts this long; each further one twice as long, up to the max. */
export const BASE_EJECTION_MS = 1_000;
export const MAX_EJECTION_MS = 30_000;

export class Endpoint {
  readonly address: EndpointAddress;
  readonly client: Client;
  inFlight = 0;
  calls = 0;
  failures = 0;
  ejections = 0;
  #consecutiveFailures = 0;
  #ejectedUntil = 0;
  #state: connectivityState;
  #closed = false;
  readonly #onChange: (endpoint: Endpoint) => void;

  constructor(
    address: EndpointAddress,
    options: ChannelOptions,
    onChange: (endpoint: Endpoint) => void,
    channelCredentials: ChannelCredentials = credentials.createInsecure(),
  ) {
    this.address = address;
    this.#onChange = onChange;
    this.client = new Client(address, channelCredentials, options);
    // Connect now, and again whenever the channel goes idle (a server's GOAWAY,
    // grpc-js's idle timeout): an endpoint in rotation keeps a warm connection.
    this.#state = this.client.getChannel().getConnectivityState(true);
    this.#watch();
  }

  get state(): connectivityState {
    return this.#state;
  }

  get stateName(): string {
    return connectivityState[this.#state] ?? String(this.#state);
  }

  /** Connected, and not ejected for failing. */
  isReady(now: number): boolean {
    return this.#state === connectivityState.READY && now >= this.#ejectedUntil;
  }

  isEjected(now: number): boolean {
    return now < this.#ejectedUntil;
  }

  /** Starts connecting if idle (grpc-js connects lazily). */
  connect(): void {
    if (!this.#closed) this.client.getChannel().getConnectivityState(true);
  }

  /** A call ended; `unavailable` when the endpoint answered (or failed with) Unavailable. */
  record(unavailable: boolean, now: number): void {
    if (!unavailable) {
      this.#consecutiveFailures = 0;
      return;
    }
    this.failures++;
    this.#consecutiveFailures++;
    if (this.#consecutiveFailures >= EJECTION_THRESHOLD && now >= this.#ejectedUntil) {
      // Ejected for a while, then probed by real calls again; each relapse doubles the wait.
      this.#ejectedUntil = now + Math.min(MAX_EJECTION_MS, BASE_EJECTION_MS * 2 ** this.ejections);
      this.ejections++;
      this.#consecutiveFailures = 0;
      this.#onChange(this);
    }
  }

  /** No new calls; those in flight finish (grpc-js closes the channel when they are done). */
  close(): void {
    this.#closed = true;
    this.client.close();
  }

  #watch(): void {
    if (this.#closed) return;
    const channel = this.client.getChannel();
    const seen = this.#state;
    channel.watchConnectivityState(seen, Date.now() + 3_600_000, () => {
      if (this.#closed) return;
      this.#state = channel.getConnectivityState(false);
      if (this.#state === connectivityState.IDLE) this.connect();
      if (this.#state !== seen) this.#onChange(this);
      this.#watch();
    });
  }
}
