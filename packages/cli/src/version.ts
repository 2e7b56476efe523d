import { createRequire } from "node:module";

// Read at runtime from the package's own package.json, one directory up from both src/ and dist/.
const manifest = createRequire(import.meta.url)("../package.json") as { version: string };

/** The CLI's version (its package.json's), printed by `ocgw --version`. */
export const CLI_VERSION: string = manifest.version;
