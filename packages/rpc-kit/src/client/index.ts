/** `@demo/rpc-kit/client`: the pieces under `createClient`, for libraries, tools and tests. */

export {
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_DEADLINE_MARGIN_MS,
  DEFAULT_STREAM_TIMEOUT_MS,
  outboundTimeoutMs,
} from "../call/deadline.ts";
export { parseTarget } from "../config/config.ts";
export type { BalancingPolicy } from "./balancing.ts";
export { createClientFromTransport } from "./client.ts";
export type { RetryBudgetOptions } from "./retry-budget.ts";
export { DEFAULT_RETRY, type RetryOptions } from "./retry-policy.ts";
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_DNS_REFRESH_MS,
  type UpstreamOptions,
  type UpstreamSnapshot,
} from "./upstream.ts";
export { DEFAULT_CHANNEL_OPTIONS, defaultUpstreamPool, UpstreamPool } from "./upstream-pool.ts";
