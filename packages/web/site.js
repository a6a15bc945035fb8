/** The built page (dist/site, made by `npm run build`), for the gateway to serve. */
export const siteDir = new URL("./dist/site/", import.meta.url);
