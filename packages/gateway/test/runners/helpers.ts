import { readFileSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import type { RunInput } from "../../src/runners/index.ts";

export interface TestInput {
  input: RunInput;
  deltas: string[];
  controller: AbortController;
}

/** A RunInput with a fresh AbortController (unless a signal is given) and deltas collected in order. */
export function makeInput(overrides: Partial<RunInput> = {}): TestInput {
  const controller = new AbortController();
  const deltas: string[] = [];
  const input: RunInput = {
    runId: "run-1",
    sessionKey: "agent:main:test",
    message: "hello",
    history: [],
    cwd: null,
    signal: controller.signal,
    onDelta: (text) => deltas.push(text),
    ...overrides,
  };
  return { input, deltas, controller };
}

export function makeTempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), "ocgw-runner-"));
}

export async function removeTempDir(dir: string | undefined): Promise<void> {
  if (dir !== undefined) await fs.rm(dir, { recursive: true, force: true });
}

/** Resolves `ms` later. */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The error a promise rejects with; fails the test if it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string; details?: Record<string, unknown> }> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof Error) return error;
    throw new Error(`rejected with a non-Error: ${String(error)}`, { cause: error });
  }
  throw new Error("expected the promise to reject, but it resolved");
}

/**
 * True when `pid` no longer runs: `kill(pid, 0)` fails with ESRCH, or (Linux) the process is a
 * zombie, i.e. dead and only waiting for its parent (here PID 1, which reaps lazily) to collect it.
 */
export function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return true;
    throw error;
  }
  if (process.platform !== "linux") return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

/** Polls until `predicate` holds; fails after `ms` (a bound that only detects hangs). */
export async function waitFor(predicate: () => boolean, ms = 10_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await pause(10);
  }
}

/** SIGKILLs each pid this test started that may still run; ignores those already gone. */
export function killLeftovers(pids: Iterable<number>): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}
