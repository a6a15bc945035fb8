import { flushLogger, type Logger } from "@demo/rpc-kit";

/** users' migrations: versioned SQL files, shipped beside dist/ in the image. */
export const MIGRATIONS = new URL("../migrations/", import.meta.url);

/** Reports a database that cannot be opened in one line, and exits 1. */
export function cannotStart(logger: Logger, what = "users"): (err: unknown) => Promise<never> {
  return async (err) => {
    logger.fatal({ err }, `${what} cannot start: ${(err as Error).message}`);
    await flushLogger(logger);
    process.exit(1);
  };
}
