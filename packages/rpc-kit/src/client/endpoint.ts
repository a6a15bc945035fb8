import { type ChannelCredentials, type ChannelOptions, Client, connectivityState, credentials } from "@grpc/grpc-js";
import type { EndpointAddress } from "./discovery.ts";

/**
 * One upstream endpoint (an address): one grpc-js channel to it, whose
 * connection grpc-js keeps up (keepalive, reconnect with backoff, transparent
 * retry of refused streams), plus what balancing needs to know: its
 * connectivity, its in-flight calls, and whether it is ejected.
 */

/**
 * Outlier ejection: an endpoint that answers Unavailable again and again
 * (overloaded, draining, broken) is left out of balancing for a while, then
 * probed by real calls again. Every field has a default.
 */
export interface EjectionOptions {
  /** Consecutive Unavailable answers that eject an endpoint. Default 5; 0 turns ejection off. */
  readonly consecutiveFailures?: number;
  /** The first ejection's length; each relapse doubles it. Default 1,000 ms. */
  readonly baseMs?: number;
  /**
   * The longest ejection; an endpoint that stays in rotation this long after
   * its last ejection starts over at `baseMs`. Default 30,000 ms.
   */
  readonly maxMs?: number;
}

export const DEFAULT_EJECTION: Required<EjectionOptions> = Object.freeze({
  consecutiveFailures: 5,
  baseMs: 1_000,
  maxMs: 30_000,
});

export class Endpoint {
  readonly address: EndpointAddress;
  readonly client: Client;
  inFlight = 0;
  calls = 0;
  failures = 0;
  /** Ejections since the endpoint was created (for /debug/rpc). */
  ejections = 0;
  /** Ejections since the last long healthy spell: sets the next ejection's length. */
  #relapses = 0;
  #consecutiveFailures = 0;
  #ejectedUntil = 0;
  #state: connectivityState;
  #closed = false;
  readonly #onChange: (endpoint: Endpoint) => void;
  readonly #ejection: Required<EjectionOptions>;

  constructor(
    address: EndpointAddress,
    options: ChannelOptions,
    onChange: (endpoint: Endpoint) => void,
    channelCredentials: ChannelCredentials = credentials.createInsecure(),
    ejection: Required<EjectionOptions> = DEFAULT_EJECTION,
  ) {
    this.address = address;
    this.#onChange = onChange;
    this.#ejection = ejection;
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
    const { consecutiveFailures, baseMs, maxMs } = this.#ejection;
    if (consecutiveFailures > 0 && this.#consecutiveFailures >= consecutiveFailures && now >= this.#ejectedUntil) {
      // Ejected for a while, then probed by real calls again; each relapse doubles the wait,
      // unless the endpoint did well for the longest wait since its last ejection.
      if (now - this.#ejectedUntil >= maxMs) this.#relapses = 0;
      this.#ejectedUntil = now + Math.min(maxMs, baseMs * 2 ** this.#relapses);
      this.#relapses++;
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
