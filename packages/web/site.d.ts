/** The built page (dist/site, made by `npm run build`), for the gateway to serve. */
export declare const siteDir: URL;
