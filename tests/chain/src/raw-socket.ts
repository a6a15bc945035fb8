/**
 * What the hand-written HTTP/1.1 and HTTP/2 test clients (raw-h1.ts,
 * raw-h2.ts) share: a `net.Socket` from a chosen source address, writes that
 * never throw on a closed socket, waiting on what arrives, and how the
 * connection ended.
 */
import * as net from "node:net";

export interface RawConnectionOptions {
  readonly port: number;
  readonly host?: string;
  /** Source address: attackers bind another 127.x address than the legitimate client. */
  readonly localAddress?: string;
  /** Fail when not connected within this (default 5 s). */
  readonly connectTimeoutMs?: number;
}

/** A connected socket, or a rejection naming the port. */
export function connectSocket(options: RawConnectionOptions): { socket: net.Socket; connected: Promise<void> } {
  const socket = net.connect({
    port: options.port,
    host: options.host ?? "127.0.0.1",
    ...(options.localAddress !== undefined && { localAddress: options.localAddress }),
  });
  socket.setNoDelay(true);
  const connected = new Promise<void>((resolve, reject) => {
    const ms = options.connectTimeoutMs ?? 5_000;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no connection to :${options.port} in ${ms} ms`));
    }, ms);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  return { socket, connected };
}

export abstract class RawConnection {
  readonly socket: net.Socket;
  readonly openedAt = performance.now();
  bytesSent = 0;
  bytesReceived = 0;
  /** The connection closed (by either side); ms after it opened. */
  closedAtMs: number | undefined;
  /** We closed it ourselves (destroy/reset). */
  closedByUs = false;
  /** Socket error code, if any (ECONNRESET, ...). */
  error: string | undefined;
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;
  readonly #waiters = new Set<() => void>();

  protected constructor(socket: net.Socket) {
    this.socket = socket;
    this.closed = new Promise((resolve) => {
      socket.once("close", () => {
        this.closedAtMs = performance.now() - this.openedAt;
        this.onClose();
        this.wake();
        resolve();
      });
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      this.error ??= err.code ?? err.message;
    });
    socket.on("data", (chunk: Buffer) => {
      this.bytesReceived += chunk.length;
      this.onBytes(chunk);
      this.wake();
    });
  }

  /** What arrived. */
  protected abstract onBytes(chunk: Buffer): void;

  /** The socket closed (before waiters wake). */
  protected onClose(): void {}

  get isClosed(): boolean {
    return this.closedAtMs !== undefined || this.socket.destroyed;
  }

  /** Writes `bytes` now; false when the socket asks us to wait (or is closed). */
  writeNow(bytes: Uint8Array | string): boolean {
    if (this.isClosed) return false;
    this.bytesSent += bytes.length;
    return this.socket.write(bytes);
  }

  /** Writes `bytes` and waits until the socket takes more, closes, or `deadline` (performance.now()) passes. */
  async write(bytes: Uint8Array | string, deadline = Number.POSITIVE_INFINITY): Promise<void> {
    if (this.writeNow(bytes) || this.isClosed) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.socket.off("drain", done);
        this.socket.off("close", done);
        resolve();
      };
      const timer = Number.isFinite(deadline) ? setTimeout(done, Math.max(0, deadline - performance.now())) : undefined;
      this.socket.once("drain", done);
      this.socket.once("close", done);
    });
  }

  /** Polls `check` on everything received and every 50 ms; true if it held before `deadline` (performance.now()). */
  async waitFor(check: () => boolean, deadline: number): Promise<boolean> {
    while (!check()) {
      const left = deadline - performance.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 50));
        this.#waiters.add(done);
      });
    }
    return true;
  }

  /** Waits until the socket closes or `ms` pass; true if it closed. */
  async waitClosed(ms: number): Promise<boolean> {
    return this.waitFor(() => this.isClosed, performance.now() + ms);
  }

  /** Closes the connection from our side. */
  destroy(): void {
    if (!this.isClosed) this.closedByUs = true;
    this.socket.destroy();
  }

  /** Cuts the connection with a TCP RST. */
  reset(): void {
    if (!this.isClosed) this.closedByUs = true;
    this.socket.resetAndDestroy();
  }

  /** How it ended, for assertion messages. */
  protected describeClose(): string {
    return this.closedAtMs === undefined
      ? "still open"
      : `closed ${this.closedByUs ? "by us" : "by the server"} at ${this.closedAtMs.toFixed(0)} ms`;
  }

  protected wake(): void {
    for (const w of [...this.#waiters]) w();
  }
}
