import type { Logger } from "../observe/logger.ts";

/**
 * Whether a dependency answers, as the server's readiness reads it: the
 * process is NOT_SERVING (gRPC health, `/readyz`) while it does not, and its
 * liveness (`/healthz`) is untouched, so that Kubernetes takes the pod out of
 * rotation instead of restarting it. Every query says what it learned; a
 * probe once a second says it when nothing else does, so that the process is
 * ready again within about a second of the dependency's return.
 */
export class Readiness {
  #ready = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #listeners = new Set<(ready: boolean) => void>();
  readonly #probe: () => Promise<void>;
  readonly #logger: Logger;
  readonly #name: string;

  constructor(probe: () => Promise<void>, logger: Logger, name = "the database") {
    this.#probe = probe;
    this.#logger = logger;
    this.#name = name;
  }

  get ready(): boolean {
    return this.#ready;
  }

  set(ready: boolean): void {
    if (ready === this.#ready) return;
    this.#ready = ready;
    if (ready) this.#logger.info(`${this.#name} answers: ready`);
    else this.#logger.warn(`${this.#name} does not answer: not ready until it does`);
    for (const listener of this.#listeners) listener(ready);
  }

  /** Calls `listener` on every change; returns the unsubscribe. */
  subscribe(listener: (ready: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Probes now and then every `intervalMs`. */
  start(intervalMs = 1_000): Promise<void> {
    const probe = () =>
      this.#probe().then(
        () => this.set(true),
        () => this.set(false),
      );
    this.#timer ??= setInterval(probe, intervalMs).unref();
    return probe();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
