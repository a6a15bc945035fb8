import type { DescService } from "@bufbuild/protobuf";
import { createServiceImplSpec, type HandlerContext, type MethodImplSpec, type ServiceImpl } from "@connectrpc/connect";
import { handlerCallRecord, iterateInCall, runInCall } from "../call/call-record.ts";

/** A service and its handlers, written once in the Connect shape and servable on either engine. */
export interface ServiceRegistration {
  readonly service: DescService;
  readonly impl: Partial<ServiceImpl<DescService>>;
}

/** Pairs a service with its implementation, with the implementation type-checked against the service. */
export function service<S extends DescService>(desc: S, impl: ServiceImpl<S>): ServiceRegistration {
  return { service: desc, impl: impl as unknown as Partial<ServiceImpl<DescService>> };
}

/**
 * The method specs of a registration, each wrapped so that the handler runs
 * with the record of its inbound call current (call/call-record.ts): outbound calls made by the handler
 * then inherit its deadline and cancellation without being told.
 * Methods the registration leaves out answer Unimplemented.
 */
export function scopedMethodSpecs(registration: ServiceRegistration): MethodImplSpec[] {
  const spec = createServiceImplSpec(registration.service, registration.impl);
  return Object.values(spec.methods).map((m): MethodImplSpec => {
    switch (m.kind) {
      case "unary": {
        const impl = m.impl;
        return {
          ...m,
          impl: (req: Parameters<typeof impl>[0], ctx: HandlerContext) =>
            runInCall(handlerCallRecord(ctx), () => impl(req, ctx)),
        };
      }
      case "server_streaming": {
        const impl = m.impl;
        return {
          ...m,
          impl: (req: Parameters<typeof impl>[0], ctx: HandlerContext) => {
            const record = handlerCallRecord(ctx);
            return iterateInCall(
              record,
              runInCall(record, () => impl(req, ctx)),
            );
          },
        };
      }
      default:
        // Client and bidi streaming have no use in the demo yet; they are
        // served unscoped on the edge and refused by the grpc engine.
        return m;
    }
  });
}
