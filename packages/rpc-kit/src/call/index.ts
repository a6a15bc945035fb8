/** `@demo/rpc-kit/call`: how errors cross a hop (errors.ts), for code that translates them itself. */
export {
  INTERNAL_ERROR_MESSAGE,
  toCallerError,
  translateUpstreamError,
  upstreamOriginOf,
} from "./errors.ts";
