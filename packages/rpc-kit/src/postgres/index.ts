/**
 * `@demo/rpc-kit/postgres`: a service's own data in PostgreSQL, with the
 * deadlines, cancellation, codes, spans, metrics and readiness of every
 * other hop (database.ts), migrations (migrate.ts) and an embedded server
 * for development (embedded.ts).
 */
export { Database, type DatabaseOptions, type Statement } from "./database.ts";
export { type EmbeddedPostgres, startEmbeddedPostgres } from "./embedded.ts";
export { UniqueViolation } from "./errors.ts";
export { type MigrationResult, migrate } from "./migrate.ts";
export { type OpenedDatabase, openDatabase } from "./open-database.ts";
export { Readiness } from "./readiness.ts";
export { checkDatabaseUrl, type DatabaseSettings, databaseSettings } from "./settings.ts";
