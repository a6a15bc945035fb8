/** `@demo/rpc-kit/security`: mTLS files and settings, and the messages and headers of auth, CORS and the rate limit. */

export {
  CORS_ALLOWED_HEADERS,
  CORS_EXPOSED_HEADERS,
  type CorsSettings,
  ORIGIN_NOT_ALLOWED,
  parseOrigin,
} from "../edge/cors.ts";
export { RATE_LIMITED_MESSAGE, type RateLimitSettings } from "../edge/rate-limit.ts";
export { type AuthSettings, UNAUTHENTICATED_MESSAGE } from "./auth.ts";
export type { CertificateInfo, TlsFiles } from "./certificate-checks.ts";
export { CertificateFiles, type CertificateFilesOptions } from "./certificate-files.ts";
export { tlsFrom, tlsSettings } from "./tls-settings.ts";
