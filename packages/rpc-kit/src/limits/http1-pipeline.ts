import type * as http from "node:http";
import type * as net from "node:net";
import { clientAddress } from "./client-address.ts";
import type { LimitReporter } from "./limit-reporter.ts";

/**
 * HTTP/1.1 pipelining within MAX_PIPELINED_REQUESTS per connection. Node's
 * http server starts every pipelined request it parses (it stops reading only
 * when the client stops reading responses): 60,000 requests pipelined on one
 * connection all started at once, took the gateway past 500 MB and failed
 * half of everyone else's calls.
 *
 * Here a connection has at most `depth` requests in progress; the next ones
 * wait, in order, and the socket is paused so that no more are parsed. A
 * paused socket still holds what its last read delivered (up to 64 KiB of
 * requests): a connection with more than four times `depth` waiting is
 * abusing it and is closed.
 */
export class Http1Pipeline {
  readonly #states = new WeakMap<
    net.Socket,
    { active: number; waiting: [http.IncomingMessage, http.ServerResponse][] }
  >();

  readonly depth: number;
  readonly report: LimitReporter;

  constructor(depth: number, report: LimitReporter) {
    this.depth = depth;
    this.report = report;
  }

  /** Runs `handle(req, res)` now, or once an earlier request of the connection is answered. */
  dispatch(req: http.IncomingMessage, res: http.ServerResponse, handle: http.RequestListener): void {
    const socket = req.socket;
    // Requests parsed from the same read after the connection was closed for abuse.
    if (socket.destroyed) return;
    let state = this.#states.get(socket);
    if (state === undefined) {
      state = { active: 0, waiting: [] };
      this.#states.set(socket, state);
    }
    if (state.active < this.depth) {
      this.#run(socket, state, req, res, handle);
      return;
    }
    state.waiting.push([req, res]);
    pause(socket);
    if (state.waiting.length > 4 * this.depth) {
      this.report("pipelining", clientAddress(socket.remoteAddress));
      socket.destroy();
    }
  }

  #run(
    socket: net.Socket,
    state: { active: number; waiting: [http.IncomingMessage, http.ServerResponse][] },
    req: http.IncomingMessage,
    res: http.ServerResponse,
    handle: http.RequestListener,
  ): void {
    state.active++;
    if (state.active >= this.depth) pause(socket);
    res.once("close", () => {
      state.active--;
      const next = state.waiting.shift();
      if (next) this.#run(socket, state, next[0], next[1], handle);
      else if (state.active < this.depth && !socket.destroyed) resume(socket);
    });
    handle(req, res);
  }
}

/**
 * Node's http server has its own way to stop parsing a connection (used when
 * a client does not read its responses): `socket._paused` makes it pause the
 * parser after the current read, `socket.pause()` stops the reads. The same
 * flags, undone the same way it undoes them.
 */
type NodeHttpSocket = net.Socket & { _paused?: boolean; parser?: { pause(): void; resume(): void } | null };

function pause(socket: net.Socket): void {
  const s = socket as NodeHttpSocket;
  s._paused = true;
  s.pause();
}

function resume(socket: net.Socket): void {
  const s = socket as NodeHttpSocket;
  if (!s._paused) return;
  s._paused = false;
  s.parser?.resume();
  s.resume();
}
