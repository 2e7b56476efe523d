import { createRequire } from "node:module";

// Read at runtime from the package's own package.json, one directory up from both src/ and dist/.
const manifest = createRequire(import.meta.url)("../package.json") as { version: string };

/** The gateway's version (its package.json's): hello-ok `server.version`, `status.runtimeVersion` and the client's default. */
export const GATEWAY_VERSION: string = manifest.version;
