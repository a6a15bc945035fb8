import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "@demo/proto/health/v1/health_pb";
import { callRecordOf } from "../call/call-record.ts";
import type { HealthLimits } from "../limits/server-limits.ts";

export { ServingStatus };

/**
 * The serving status of a process, per service name ("" = the whole
 * process), as grpc.health.v1 reports it and the admin `/readyz` reads it.
 */
export class HealthState {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly listeners = new Set<() => void>();
  private readonly closing = new AbortController();
  /** Watch streams open now. */
  watches = 0;

  /** Sets one service's status and wakes its watchers. */
  set(service: string, status: ServingStatus): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    for (const listener of this.listeners) listener();
  }

  /** Sets every known service, and the process, to `status`. */
  setAll(status: ServingStatus): void {
    for (const service of [...this.statuses.keys(), ""]) this.set(service, status);
  }

  /** The status of `service`, or undefined when it is not known here. */
  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** True when the process as a whole is SERVING. */
  isServing(): boolean {
    return this.statuses.get("") === ServingStatus.SERVING;
  }

  /** All statuses, by service name. */
  all(): ReadonlyMap<string, ServingStatus> {
    return this.statuses;
  }

  /** Ends every Watch stream (at shutdown, so that they do not hold the drain open). */
  close(): void {
    this.closing.abort();
  }

  /** Resolves on the next change, when `signal` aborts, or when the state closes. */
  nextChange(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.listeners.delete(done);
        signal.removeEventListener("abort", done);
        this.closing.signal.removeEventListener("abort", done);
        resolve();
      };
      this.listeners.add(done);
      signal.addEventListener("abort", done, { once: true });
      this.closing.signal.addEventListener("abort", done, { once: true });
    });
  }

  get closed(): boolean {
    return this.closing.signal.aborted;
  }
}

/**
 * grpc.health.v1.Health over a HealthState: Check, Watch and List, servable
 * on either engine. Watch streams are capped (25,000 of them took the gateway
 * to 532 MB) and all end when the state closes at shutdown.
 */
export function createHealthService(
  state: HealthState,
  limits: HealthLimits = { maxWatches: Number.POSITIVE_INFINITY },
): ServiceImpl<typeof Health> {
  return {
    check(req) {
      const status = state.get(req.service);
      if (status === undefined) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
      return { status };
    },
    async *watch(req, ctx: HandlerContext) {
      if (state.watches >= limits.maxWatches) {
        limits.onRefused?.(callRecordOf(ctx.values).peerAddress);
        throw new ConnectError("too many health watches", Code.ResourceExhausted);
      }
      state.watches++;
      try {
        let last: ServingStatus | undefined;
        while (!ctx.signal.aborted && !state.closed) {
          const status = state.get(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
          if (status !== last) {
            last = status;
            yield { status };
          }
          await state.nextChange(ctx.signal);
        }
        // Ended by the caller's deadline or cancel: the call ends with that code, not OK (a server
        // shutting down ends its watches with OK after NOT_SERVING, as gRPC servers do).
        if (ctx.signal.aborted && !state.closed) throw ctx.signal.reason;
      } finally {
        state.watches--;
      }
    },
    list() {
      const statuses: Record<string, ReturnType<typeof create<typeof HealthCheckResponseSchema>>> = {};
      for (const [name, status] of state.all()) statuses[name] = create(HealthCheckResponseSchema, { status });
      return { statuses };
    },
  };
}

export { Health as HealthService };
