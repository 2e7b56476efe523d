import { spawnSync } from "node:child_process";
import * as nodeFs from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { performance } from "node:perf_hooks";
import * as path from "node:path";
import { Volume, createFsFromVolume } from "memfs";
import { onTestFinished } from "vitest";
import type { FsPort } from "../src/fs-port.ts";

/**
 * A fresh real directory for one test, removed when the test finishes (set OCGW_KEEP_TMP=1 to
 * keep it for debugging). Everything a test creates on the real disk lives below it.
 */
export async function tempDir(prefix = "ocgw-ws-"): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  onTestFinished(async () => {
    if (process.env.OCGW_KEEP_TMP === "1") return;
    // A test may leave 0000 directories behind on purpose; root removes them anyway.
    await removeTestDir(dir);
  });
  return dir;
}

/** Removes a test's dir whatever it holds, however deep. */
export async function removeTestDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true }).catch(() => removeWithRm(dir));
}

/**
 * rm(1) for what fs.rm cannot remove: fs.rm builds whole paths and fails with ENAMETOOLONG on a tree
 * deeper than PATH_MAX (a hostile-tree test that failed leaves one), while rm(1) walks it by
 * directory descriptors.
 */
function removeWithRm(dir: string): void {
  const result = spawnSync("rm", ["-rf", "--", dir], { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`could not remove the test dir ${dir}: ${result.stderr}`);
}

/** Field `n` of /proc/<pid>/stat, numbered as proc(5) does (3: state, 22: start time in clock ticks); "" once the process is gone. */
export async function procStatField(pid: number, n: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  // The command name (field 2) is in parentheses and may hold spaces: count from the last ")".
  return stat === "" ? "" : (stat.slice(stat.lastIndexOf(")") + 2).split(" ")[n - 3] ?? "");
}

/** Every path below `dir`, relative, sorted; links listed, never followed. */
export function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (current: string): void => {
    for (const entry of nodeFs.readdirSync(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      out.push(path.relative(dir, full));
      if (entry.isDirectory() && !entry.isSymbolicLink()) walk(full);
    }
  };
  walk(dir);
  return out.sort();
}

/** The fs port over a memfs volume: what fault and permission tests run against. */
export function memfsPort(vol: InstanceType<typeof Volume> = new Volume()): { port: FsPort; vol: InstanceType<typeof Volume> } {
  const fs = createFsFromVolume(vol);
  const promises = fs.promises as unknown as FsPort["promises"];
  const port: FsPort = {
    promises,
    lockFs: fs as unknown as FsPort["lockFs"],
    constants: nodeFs.constants,
    async createLeaseDir(root, name) {
      await promises.mkdir(path.join(root, name), { mode: 0o700 });
    },
  };
  return { port, vol };
}

export type FaultOp = "createLeaseDir" | keyof FsPort["promises"];

/** A system error as Node raises it. */
export function sysError(code: string, op: string, target: string): NodeJS.ErrnoException {
  const error = new Error(`${code}: injected failure, ${op} '${target}'`) as NodeJS.ErrnoException;
  error.code = code;
  error.syscall = op;
  error.path = target;
  return error;
}

/**
 * Wraps a port so that chosen operations fail with an errno code, optionally only for paths that
 * match. `faults` is live: tests switch faults on and off between steps.
 */
export function withFaults(port: FsPort): { port: FsPort; faults: Map<FaultOp, { code: string; match?: (target: string) => boolean }> } {
  const faults = new Map<FaultOp, { code: string; match?: (target: string) => boolean }>();
  const check = (op: FaultOp, target: unknown): void => {
    const fault = faults.get(op);
    const where = typeof target === "string" ? target : String(target);
    if (fault !== undefined && (fault.match === undefined || fault.match(where))) throw sysError(fault.code, op, where);
  };
  const promises = new Proxy(port.promises, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== "function") return value;
      return async (...args: unknown[]) => {
        check(prop as FaultOp, args[0]);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return {
    faults,
    port: {
      ...port,
      promises,
      async createLeaseDir(root, name) {
        check("createLeaseDir", path.join(root, name));
        await port.createLeaseDir(root, name);
      },
    },
  };
}

/** Keys that must never escape, collide or break a name. */
export const HOSTILE_KEYS: readonly string[] = [
  "../../etc",
  "/abs",
  "/abs/path",
  "a/b",
  "a_b",
  "A/B",
  "..",
  ".",
  "a..b",
  "a\u0000b",
  "line\nbreak",
  "carriage\rreturn",
  "\u001b[31mansi",
  "x".repeat(300),
  "y".repeat(5000),
  "😀".repeat(64),
  "CON",
  "nul.txt",
  "trailing.",
  "trailing ",
  "C:\\x",
  "..\\..\\x",
  "-rf",
  "café".normalize("NFC"),
  "café".normalize("NFD"),
  "Main",
  "main",
];

/** Levels of one chain in {@link deepTree}: its deepest path stays near 1 KB. */
const CHAIN_LEVELS = 500;

/**
 * Builds `<dir>/c0/d/…/d/c1/d/…` at least `depth` directories deep, though no path handed to the
 * file system is longer than about 1 KB: chains of 500 levels are made side by side, then each is
 * renamed into the bottom of the one before. `atBottom` is called with the (still short) path of
 * the deepest directory before the chains are nested, to plant things there.
 */
export async function deepTree(dir: string, depth: number, atBottom?: (bottom: string) => Promise<void>): Promise<void> {
  const tail = Array.from({ length: CHAIN_LEVELS - 1 }, () => "d").join(path.sep);
  const chains = Math.ceil(depth / CHAIN_LEVELS);
  for (let i = 0; i < chains; i++) await mkdir(path.join(dir, `c${i}`, tail), { recursive: true });
  await atBottom?.(path.join(dir, `c${chains - 1}`, tail));
  for (let i = chains - 1; i > 0; i--) await rename(path.join(dir, `c${i}`), path.join(dir, `c${i - 1}`, tail, `c${i}`));
}

export interface EventLoopWatch {
  /** Stops watching; what was seen meanwhile. */
  stop(): { ticks: number; longestGapMs: number; mostFsRequests: number };
}

/**
 * Watches the event loop while something runs: `ticks` of a 10 ms interval, `longestGapMs`, the
 * longest wait between two ticks (or since the last one), and `mostFsRequests`, the most fs
 * requests in flight at any tick (`process.getActiveResourcesInfo`). Nothing spins: the loop stays
 * idle between ticks, so the watch does not steal the CPU it measures.
 */
export function watchEventLoop(): EventLoopWatch {
  let ticks = 0;
  let longestGapMs = 0;
  let mostFsRequests = 0;
  let last = performance.now();
  const interval = setInterval(() => {
    const now = performance.now();
    longestGapMs = Math.max(longestGapMs, now - last);
    last = now;
    ticks += 1;
    mostFsRequests = Math.max(mostFsRequests, process.getActiveResourcesInfo().filter((name) => name.startsWith("FSReq")).length);
  }, 10);
  return {
    stop() {
      clearInterval(interval);
      return { ticks, mostFsRequests, longestGapMs: Math.max(longestGapMs, performance.now() - last) };
    },
  };
}

/** The unprivileged uid/gid tests run code as when they run as root (root ignores permission bits). */
export const NOBODY = 65_534;

/**
 * Why uid 65534 cannot run this Node on `script` here, or null when it can. A checkout inside a
 * directory only its owner may enter (a clone in a 0700 `mktemp -d`) is the usual reason; tests
 * that need to run as 65534 skip, printing it.
 */
export function nobodyCannotRun(script: string): string | null {
  const probe = spawnSync(process.execPath, ["-e", `require("node:fs").accessSync(${JSON.stringify(script)}, require("node:fs").constants.R_OK)`], {
    uid: NOBODY,
    gid: NOBODY,
    encoding: "utf8",
  });
  return probe.status === 0 ? null : `uid 65534 cannot run ${process.execPath} on ${script} here: ${probe.error?.message ?? probe.stderr.trim()}`;
}
