/**
 * The bytes of request bodies a process holds in memory for calls in
 * progress (received, and decompressed), against one total and, at the edge,
 * a share per client address (MAX_BUFFERED_REQUEST_BYTES and
 * MAX_BUFFERED_REQUEST_BYTES_PER_CLIENT).
 *
 * Without a total, each call's own limit (MAX_MESSAGE_BYTES) multiplies with
 * the number of calls: 128 unfinished 4 MiB bodies took the gateway past its
 * 512 Mi memory limit. Each call takes a lease that grows as its bytes
 * arrive; a call whose next bytes do not fit fails ResourceExhausted, and a
 * call that arrives when nothing is left is refused before its body is read.
 */
export class ByteBudget {
  /** Bytes held by every lease. */
  used = 0;
  readonly #byClient = new Map<string, number>();

  readonly total: number;
  /** Share of one client (undefined: no per-client share). */
  readonly perClient: number | undefined;

  constructor(total: number, perClient?: number) {
    this.total = total;
    this.perClient = perClient;
  }

  /** A lease for one call's body; `client` is the caller's address where a per-client share applies. */
  lease(client?: string): ByteLease {
    return new ByteLease(this, this.perClient === undefined ? undefined : client);
  }

  /** Bytes `client` holds. */
  heldBy(client: string): number {
    return this.#byClient.get(client) ?? 0;
  }

  /** Which bound `n` more bytes for `client` would cross, if any. */
  wouldExceed(n: number, client: string | undefined): "buffered_bytes" | "buffered_bytes_per_client" | undefined {
    if (this.used + n > this.total) return "buffered_bytes";
    if (client !== undefined && this.perClient !== undefined && this.heldBy(client) + n > this.perClient) {
      return "buffered_bytes_per_client";
    }
    return undefined;
  }

  /** @internal */
  add(client: string | undefined, n: number): void {
    this.used += n;
    if (client === undefined) return;
    const held = (this.#byClient.get(client) ?? 0) + n;
    if (held > 0) this.#byClient.set(client, held);
    else this.#byClient.delete(client);
  }
}

/** One call's share of a {@link ByteBudget}; released once, when the call ends. */
export class ByteLease {
  held = 0;
  readonly budget: ByteBudget;
  readonly client: string | undefined;

  constructor(budget: ByteBudget, client: string | undefined) {
    this.budget = budget;
    this.client = client;
  }

  /** The bound that `n` more bytes would cross, if any. */
  refusal(n: number): "buffered_bytes" | "buffered_bytes_per_client" | undefined {
    return this.budget.wouldExceed(n, this.client);
  }

  /** Takes `n` more bytes; returns the bound that refused them instead, taking nothing. */
  grow(n: number): "buffered_bytes" | "buffered_bytes_per_client" | undefined {
    const refused = this.refusal(n);
    if (refused !== undefined) return refused;
    this.held += n;
    this.budget.add(this.client, n);
    return undefined;
  }

  /** Bytes this lease could still take. */
  room(): number {
    const { budget, client } = this;
    let room = budget.total - budget.used;
    if (client !== undefined && budget.perClient !== undefined) {
      room = Math.min(room, budget.perClient - budget.heldBy(client));
    }
    return Math.max(0, room);
  }

  /** Gives back `n` bytes (all by default). */
  release(n = this.held): void {
    const back = Math.min(n, this.held);
    if (back <= 0) return;
    this.held -= back;
    this.budget.add(this.client, -back);
  }
}
