/** `@demo/rpc-kit/server`: what `serve()` is made of that tools and tests name. */

export {
  DEFAULT_CONTENT_SECURITY_POLICY,
  type StaticSite,
  type StaticSiteOptions,
} from "../edge/static-site.ts";
export {
  DEFAULT_MAX_CONCURRENT_STREAMS,
  DEFAULT_MAX_HEADER_BYTES,
  ListenError,
  MAX_MESSAGE_BYTES,
} from "../serve.ts";
export { HealthState, ServingStatus } from "./health.ts";
