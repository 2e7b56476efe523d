import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { onTestFinished } from "vitest";

/** A fresh directory for the current test, removed when the test ends (pass or fail). */
export function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ocgw-store-"));
  onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}
