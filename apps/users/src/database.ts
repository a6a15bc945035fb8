/** users' migrations: versioned SQL files, shipped beside dist/ in the image. */
export const MIGRATIONS = new URL("../migrations/", import.meta.url);
