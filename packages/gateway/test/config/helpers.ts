import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, expect } from "vitest";
import { GatewayError } from "../../src/errors.ts";

/** A fresh temp dir per test (removed afterwards); the returned function gives the current one. */
export function useTempDir(): () => string {
  let dir: string | undefined;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "ocgw-config-"));
  });
  afterEach(() => {
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });
  return () => {
    if (dir === undefined) throw new Error("useTempDir: no test is running");
    return dir;
  };
}

/** Writes `text` to `dir/name` (creating parent dirs) and returns the absolute path. */
export function writeFile(dir: string, name: string, text: string): string {
  const file = path.join(dir, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

/** The GatewayError `action` throws or rejects with; fails the test when there is none. */
export async function caught(action: () => unknown): Promise<GatewayError> {
  try {
    await action();
  } catch (error) {
    expect(error).toBeInstanceOf(GatewayError);
    return error as GatewayError;
  }
  expect.fail("expected a GatewayError, but nothing was thrown");
}

/** `details.issues` of a CONFIG_INVALID error. */
export function issuesOf(error: GatewayError): { path: string; message: string; source: string }[] {
  expect(error.code).toBe("CONFIG_INVALID");
  return (error.details?.["issues"] ?? []) as { path: string; message: string; source: string }[];
}
