import * as path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Node's compile cache directory for the CLI module at `moduleUrl`: beside the dependencies, like
 * other tools' caches, never in the user's temp or home directory. Installed, the CLI is
 * `<…>/node_modules/@ocgw/cli/dist/main.js` and the cache `<…>/node_modules/.cache/ocgw-compile`;
 * in the repository (packages/cli/src or dist: import.meta.url has already resolved the
 * node_modules/@ocgw/cli symlink) it is the repo's `node_modules/.cache/ocgw-compile`.
 */
export function compileCacheDir(moduleUrl: string): string {
  const here = fileURLToPath(moduleUrl);
  const marker = `${path.sep}node_modules${path.sep}`;
  const at = here.lastIndexOf(marker);
  if (at >= 0) return path.join(here.slice(0, at + marker.length), ".cache", "ocgw-compile");
  return fileURLToPath(new URL("../../../node_modules/.cache/ocgw-compile", moduleUrl));
}
