import { randomUUID } from "node:crypto";
import { readFileSync, readlinkSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { MARKER_NAME } from "@ocgw/workspace";
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

/**
 * Shell lines that start a process leaving the run's process group (`setsid`), each writing its
 * own pid to `<name>.pid` in the current directory before it goes on. `double-fork` and the
 * others run from a subshell that exits at once, so their parent is no longer the run's shell.
 */
export const ESCAPES = {
  /** A setsid child of the run's shell, in the workspace. */
  setsid: `setsid sh -c 'echo $$ > setsid.pid; exec sleep 300' </dev/null >/dev/null 2>&1 &`,
  /** Double fork into a new session: re-parented, keeps the environment and the cwd. */
  "double-fork": `( setsid sh -c 'echo $$ > double-fork.pid; exec sleep 300' </dev/null >/dev/null 2>&1 & )`,
  /** Double fork into a new session, then chdir out of the workspace; keeps the environment. */
  "chdir-out": `( setsid sh -c 'echo $$ > chdir-out.pid; cd /; exec sleep 300' </dev/null >/dev/null 2>&1 & )`,
  /** Double fork into a new session with a cleared environment (`env -i`); keeps the cwd. */
  "cleared-env": `( setsid env -i PATH="$PATH" sh -c 'echo $$ > cleared-env.pid; exec sleep 300' </dev/null >/dev/null 2>&1 & )`,
  /** A setsid child of the run's shell with a cleared environment that chdirs out: only its parent links it to the run. */
  "child-cleared-env-out": `setsid env -i PATH="$PATH" sh -c 'echo $$ > child-cleared-env-out.pid; cd /; exec sleep 300' </dev/null >/dev/null 2>&1 &`,
} as const;

export type EscapeKind = keyof typeof ESCAPES;

/** A script that starts each escape, waits for their pid files, prints `$$` then their pids on one line, then runs `then`. */
export function escapeScript(kinds: readonly EscapeKind[], then: string): string {
  const start = kinds.map((kind) => ESCAPES[kind]).join("\n");
  const files = kinds.map((kind) => `${kind}.pid`).join(" ");
  const pids = kinds.map((kind) => `$(cat ${kind}.pid)`).join(" ");
  return `${start}\nfor f in ${files}; do while [ ! -s "$f" ]; do sleep 0.01; done; done\necho "$$ ${pids}"\n${then}`;
}

/** Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, session, ...]; null once gone. */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/** The process group of `pid` (Linux), or null once it is gone. */
export function processGroupOf(pid: number): number | null {
  const fields = statFields(pid);
  return fields === null ? null : Number(fields[2]);
}

/** The working directory of `pid` (Linux), or null if it cannot be read. */
export function cwdOf(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return null;
  }
}

/** The names in the environment `pid` was started with (Linux). */
export function environNames(pid: number): string[] {
  return readFileSync(`/proc/${pid}/environ`, "latin1")
    .split("\0")
    .filter((entry) => entry !== "")
    .map((entry) => entry.slice(0, entry.indexOf("=")));
}

/** Writes the ephemeral provider's lease marker for `sessionKey` into `dir`, as the provider does for a lease directory. */
export async function writeLeaseMarker(dir: string, sessionKey: string): Promise<void> {
  const st = await fs.stat(dir);
  const marker = {
    v: 1,
    tool: "ocgw",
    leaseId: randomUUID(),
    instanceId: "test-instance",
    name: path.basename(dir),
    key: sessionKey,
    agentId: "main",
    createdAt: Date.now(),
    dev: String(st.dev),
    ino: String(st.ino),
    pid: process.pid,
    host: os.hostname(),
  };
  await fs.writeFile(path.join(dir, MARKER_NAME), JSON.stringify(marker), { mode: 0o600 });
}
