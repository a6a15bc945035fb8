import type * as net from "node:net";
import { clientAddress } from "./client-address.ts";
import type { LimitReporter } from "./limit-reporter.ts";
import type { ResetBudget } from "./reset-budget.ts";

/**
 * Which connections the edge's RPC port keeps: at most MAX_CONNECTIONS in
 * all and MAX_CONNECTIONS_PER_CLIENT per client address, none from an
 * address penalized for resetting too many streams. Others are closed as
 * soon as they are accepted, so that the process never runs out of file
 * descriptors (the admin port's /healthz included). Also the first
 * deadline of a connection: its first bytes within HEADERS_TIMEOUT_MS.
 */
export interface ConnectionLimitsOptions {
  readonly maxConnections: number;
  readonly maxPerClient: number;
  readonly headersTimeoutMs: number;
  readonly report: LimitReporter;
  readonly resets?: ResetBudget;
}

export class ConnectionLimits {
  open = 0;
  readonly #perClient = new Map<string, number>();

  readonly options: ConnectionLimitsOptions;

  constructor(options: ConnectionLimitsOptions) {
    this.options = options;
  }

  /** Keeps `socket`, counted until it closes; or closes it at once and says why. */
  admit(socket: net.Socket): boolean {
    const client = clientAddress(socket.remoteAddress);
    const held = this.#perClient.get(client) ?? 0;
    const refused =
      this.open >= this.options.maxConnections
        ? "connections"
        : held >= this.options.maxPerClient
          ? "connections_per_client"
          : this.options.resets?.penalized(client)
            ? "reset_streams"
            : undefined;
    if (refused !== undefined) {
      this.options.report(refused, client);
      socket.destroy();
      return false;
    }
    this.open++;
    this.#perClient.set(client, held + 1);
    socket.once("close", () => {
      this.open--;
      const left = (this.#perClient.get(client) ?? 1) - 1;
      if (left > 0) this.#perClient.set(client, left);
      else this.#perClient.delete(client);
    });
    return true;
  }

  /** Closes `socket` unless the returned function is called within HEADERS_TIMEOUT_MS. */
  firstBytesDeadline(socket: net.Socket): () => void {
    const timer = setTimeout(() => {
      this.options.report("headers_timeout", clientAddress(socket.remoteAddress));
      socket.destroy();
    }, this.options.headersTimeoutMs).unref();
    socket.once("close", () => clearTimeout(timer));
    return () => clearTimeout(timer);
  }
}
