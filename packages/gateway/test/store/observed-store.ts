import * as path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { onTestFinished } from "vitest";
import { openStore } from "../../src/store/index.ts";
import type { Store } from "../../src/store/index.ts";
import { tempDir } from "./temp-dir.ts";

/**
 * A file store for the current test and a second, read-only connection to the same file that
 * sees only what is committed (both closed when the test ends).
 */
export function observedStore(): { store: Store; observer: DatabaseSync } {
  const file = path.join(tempDir(), "state.db");
  const store = openStore({ path: file });
  const observer = new DatabaseSync(file, { readOnly: true });
  onTestFinished(() => {
    observer.close();
    store.close();
  });
  return { store, observer };
}
