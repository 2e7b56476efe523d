import { randomUUID } from "node:crypto";
import { readFileSync, readlinkSync } from "node:fs";
import { hostname } from "node:os";
import * as path from "node:path";
import lockfile from "proper-lockfile";
import { z } from "zod";
import { WorkspaceError, describeError, errnoCode } from "./errors.ts";
import { type FsPort, nodeFsPort } from "./fs-port.ts";
import { INSTANCES_DIR } from "./paths.ts";
import { readProcStat } from "./proc-stat.ts";

/**
 * Liveness timing. A live instance refreshes its lock every `heartbeatMs`; one silent for
 * `staleMs` is dead unless its process is proven alive (see {@link createLivenessProbe}).
 */
export interface LivenessOptions {
  /**
   * A lock not refreshed for this long proves its owner dead, unless the owner's process is proven
   * alive on this machine (stopped, suspended or blocked, not gone). Default 60,000 ms (1 min); minimum 2,000.
   */
  staleMs?: number | undefined;
  /** How often the owner refreshes its lock. Default staleMs / 6; between 1,000 and staleMs / 2. */
  heartbeatMs?: number | undefined;
}

export const DEFAULT_STALE_MS = 60_000; // 1 min: far above any event-loop stall we expect

export interface InstanceOptions extends LivenessOptions {
  /** The ephemeral root this instance creates leases in. */
  root: string;
  fs?: FsPort | undefined;
  /** Called when the heartbeat lock is lost (e.g. the event loop stalled past staleMs). */
  onCompromised?: ((error: WorkspaceError) => void) | undefined;
}

/** A running gateway (or test) that owns leases in a root, proven alive by a held, refreshed lock. */
export interface InstanceHandle {
  readonly id: string;
  readonly root: string;
  /** Trash entries this instance is deleting right now: the collector leaves them alone. */
  readonly busyTrash: Set<string>;
  readonly closed: boolean;
  /** Drops the lock and the instance record. Leases left behind become collectable. Idempotent. */
  close(): Promise<void>;
}

/**
 * The fields of a {@link ProcessIdentity} as records on disk hold them. `startTicks` is optional:
 * records written before it existed lack it, and still parse.
 */
export const processIdentityFields = {
  pid: z.int().nonnegative(),
  host: z.string(),
  bootId: z.string().nullable(),
  pidNs: z.string().nullable(),
  startTicks: z.int().nonnegative().nullable().optional(),
};

const instanceInfoSchema = z.strictObject({
  v: z.literal(1),
  id: z.string(),
  ...processIdentityFields,
  startedAt: z.int(),
});
type InstanceInfo = z.infer<typeof instanceInfoSchema>;

function resolveTiming(options: LivenessOptions): { staleMs: number; heartbeatMs: number } {
  const staleMs = options.staleMs ?? DEFAULT_STALE_MS;
  if (!Number.isInteger(staleMs) || staleMs < 2000) {
    throw new WorkspaceError("WS_INVALID_OPTIONS", `staleMs must be an integer of at least 2000, got ${staleMs}`);
  }
  const heartbeatMs = options.heartbeatMs ?? Math.max(1000, Math.floor(staleMs / 6));
  if (!Number.isInteger(heartbeatMs) || heartbeatMs < 1000 || heartbeatMs > staleMs / 2) {
    throw new WorkspaceError("WS_INVALID_OPTIONS", `heartbeatMs must be an integer between 1000 and staleMs / 2 (${staleMs / 2}), got ${heartbeatMs}`);
  }
  return { staleMs, heartbeatMs };
}

function infoPath(root: string, id: string): string {
  return path.join(root, INSTANCES_DIR, `${id}.json`);
}
function lockPath(root: string, id: string): string {
  return path.join(root, INSTANCES_DIR, `${id}.lock`);
}

let machine: { host: string; bootId: string | null; pidNs: string | null } | undefined;
/** What makes a pid meaningful: same host, same boot, same pid namespace (Linux). */
function machineIdentity(): { host: string; bootId: string | null; pidNs: string | null } {
  if (machine === undefined) {
    let bootId: string | null = null;
    let pidNs: string | null = null;
    try {
      bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
      pidNs = readlinkSync("/proc/self/ns/pid");
    } catch {
      // Not Linux: no pid fast path; liveness rests on the lock alone.
    }
    machine = { host: hostname(), bootId, pidNs };
  }
  return machine;
}

/** Registers a live instance in `<root>/.instances/`: an info file and a lock refreshed every heartbeatMs. */
export async function registerInstance(options: InstanceOptions): Promise<InstanceHandle> {
  const fs = options.fs ?? nodeFsPort;
  const { staleMs, heartbeatMs } = resolveTiming(options);
  const id = randomUUID();
  const dir = path.join(options.root, INSTANCES_DIR);
  const info: InstanceInfo = { v: 1, id, ...currentProcess(), startedAt: Date.now() };
  const handle = {
    id,
    root: options.root,
    busyTrash: new Set<string>(),
    closed: false,
    lost: false,
    close(): Promise<void> {
      closing ??= (async () => {
        handle.closed = true;
        if (relockTimer !== undefined) clearTimeout(relockTimer);
        if (!handle.lost) await unlock().catch(() => undefined);
        await fs.promises.rm(infoPath(options.root, id), { force: true }).catch(() => undefined);
      })();
      return closing;
    },
  };
  let closing: Promise<void> | undefined;
  let relockTimer: ReturnType<typeof setTimeout> | undefined;
  let unlock: () => Promise<void> = async () => undefined;

  /** Writes the record (if missing) and takes the lock; the record is ours, so a re-lock may rewrite it. */
  async function takeLock(first: boolean): Promise<void> {
    await fs.promises.mkdir(dir, { mode: 0o700 }).catch((error: unknown) => {
      if (errnoCode(error) !== "EEXIST") throw error;
    });
    await fs.promises.writeFile(infoPath(options.root, id), JSON.stringify(info), { flag: first ? "wx" : "w", mode: 0o600 });
    unlock = await lockfile.lock(infoPath(options.root, id), {
      lockfilePath: lockPath(options.root, id),
      realpath: false,
      stale: staleMs,
      update: heartbeatMs,
      retries: 0,
      fs: fs.lockFs,
      onCompromised: (error: Error) => {
        handle.lost = true;
        options.onCompromised?.(
          new WorkspaceError("WS_INSTANCE_LOCK_FAILED", `The liveness lock of instance ${id} was lost (${describeError(error)}); taking it again`, { cause: error }),
        );
        scheduleRelock();
      },
    });
    handle.lost = false;
  }

  /**
   * A lost lock (its directory removed, say by an OS temp cleaner, or an event-loop stall past
   * staleMs) is taken again under the same id, so the leases this instance marked stay alive in
   * every collector's eyes from then on. Retried every heartbeat until it works or we close.
   */
  function scheduleRelock(delayMs = 0): void {
    if (handle.closed || relockTimer !== undefined) return;
    relockTimer = setTimeout(() => {
      relockTimer = undefined;
      if (handle.closed) return;
      takeLock(false).catch(() => scheduleRelock(heartbeatMs));
    }, delayMs);
    relockTimer.unref();
  }

  try {
    await takeLock(true);
  } catch (error) {
    throw new WorkspaceError("WS_INSTANCE_LOCK_FAILED", `Cannot register instance ${id} in "${dir}" (${errnoCode(error) ?? describeError(error)})`, {
      cause: error,
      path: dir,
    });
  }
  return handle;
}

export interface LivenessProbe {
  /** True unless the instance is proven dead. Results are not cached. */
  isAlive(instanceId: string): Promise<boolean>;
}

/**
 * Decides whether an instance is alive. Dead means proven:
 * - its lock is missing;
 * - its lock is fresh, but on the same host, boot and pid namespace its process is gone or its
 *   pid was recycled (see {@link processState});
 * - its lock has not been refreshed for staleMs, and its process is not proven alive. A stale
 *   heartbeat from a process that is alive on this machine (SIGSTOP, a suspended laptop, a long
 *   event-loop block) is not death; on another host, or when identities cannot be compared,
 *   staleness alone decides.
 * Anything unclear (unreadable files, foreign host with a fresh lock) counts as alive.
 */
export function createLivenessProbe(options: { root: string; fs?: FsPort | undefined } & LivenessOptions): LivenessProbe {
  const fs = options.fs ?? nodeFsPort;
  const { staleMs } = resolveTiming(options);
  return {
    async isAlive(instanceId) {
      if (!/^[a-z0-9-]{8,64}$/.test(instanceId)) return false;
      const lock = await lockState(fs, options.root, instanceId, staleMs);
      if (lock === "unclear") return true;
      if (lock === "missing") return false;
      const info = await readInstanceInfo(fs, options.root, instanceId);
      if (lock === "fresh") return info === null || !processProvenDead(info);
      return info !== null && processState(info) === "alive";
    },
  };
}

/**
 * `probe.isAlive` memoised for one pass (a sweep, a reconcile, a listing): each instance is
 * probed at most once, concurrent callers share the probe. `self`, when given, is answered
 * without probing: alive until it is closed. Make a new one per pass; results do not expire.
 */
export function memoizeLiveness(probe: LivenessProbe, self?: InstanceHandle): (instanceId: string) => Promise<boolean> {
  const cache = new Map<string, Promise<boolean>>();
  return (id) => {
    if (self !== undefined && id === self.id) return Promise.resolve(!self.closed);
    let known = cache.get(id);
    if (known === undefined) {
      known = probe.isAlive(id);
      cache.set(id, known);
    }
    return known;
  };
}

/** The instance lock as a prober sees it; `unclear` when it cannot be checked. */
async function lockState(fs: FsPort, root: string, id: string, staleMs: number): Promise<"fresh" | "stale" | "missing" | "unclear"> {
  try {
    const fresh = await lockfile.check(infoPath(root, id), { lockfilePath: lockPath(root, id), realpath: false, stale: staleMs, fs: fs.lockFs });
    if (fresh) return "fresh";
    await fs.promises.lstat(lockPath(root, id));
    return "stale";
  } catch (error) {
    return errnoCode(error) === "ENOENT" ? "missing" : "unclear";
  }
}

/** A process as the pid fast path sees it: its pid, plus what makes the pid meaningful. */
export interface ProcessIdentity {
  pid: number;
  host: string;
  bootId: string | null;
  pidNs: string | null;
  /**
   * When the process started, in clock ticks after boot (Linux: /proc/<pid>/stat field 22): tells
   * the process from a later one that got its pid. Null where unknown; absent in older records.
   */
  startTicks?: number | null | undefined;
}

let thisProcess: ProcessIdentity | undefined;
/** This process's {@link ProcessIdentity}. */
export function currentProcess(): ProcessIdentity {
  thisProcess ??= { pid: process.pid, ...machineIdentity(), startTicks: readProcStat(process.pid)?.startTicks ?? null };
  return { ...thisProcess };
}

/**
 * What /proc/<pid>/stat says about a process on this machine: its state letter (field 3) and its
 * start time in clock ticks after boot (field 22). Null when unknown: not Linux, gone, or hidden.
 */
/**
 * What the pid fast path can prove about a process. `unknown` unless it ran on this host, boot and
 * pid namespace (Linux). There, `dead` when its pid no longer exists, exists with another start
 * time (the pid was recycled), or is a zombie (exited, not yet reaped); `alive` when its pid
 * exists with the same start time. A pid that exists while either start time is unknown (a
 * record written before start times were recorded, or a /proc that hides the process) counts as
 * `alive`: a recycled pid may then keep workspaces until that process exits, which leaks disk for
 * a while but never deletes a live workspace.
 */
export function processState(who: ProcessIdentity): "alive" | "dead" | "unknown" {
  const here = machineIdentity();
  if (who.host !== here.host || who.bootId === null || who.bootId !== here.bootId || who.pidNs === null || who.pidNs !== here.pidNs) return "unknown";
  if (!pidExists(who.pid)) return "dead";
  const stat = readProcStat(who.pid);
  if (stat === null) return pidExists(who.pid) ? "alive" : "dead";
  if (stat.state === "Z" || stat.state === "X") return "dead";
  if (who.startTicks === undefined || who.startTicks === null) return "alive";
  return stat.startTicks === who.startTicks ? "alive" : "dead";
}

/** True only when the process is proven gone: {@link processState} is `dead`. */
export function processProvenDead(who: ProcessIdentity): boolean {
  return processState(who) === "dead";
}

async function readInstanceInfo(fs: FsPort, root: string, id: string): Promise<InstanceInfo | null> {
  try {
    const st = await fs.promises.lstat(infoPath(root, id));
    if (!st.isFile() || st.size > 4096) return null;
    const parsed = instanceInfoSchema.safeParse(JSON.parse(await fs.promises.readFile(infoPath(root, id), "utf8")));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** Whether a process with this pid exists on this host (a process of another user counts). */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errnoCode(error) !== "ESRCH";
  }
}

/** Instance ids that have a record or a lock in the root. */
export async function listInstanceIds(fs: FsPort, root: string): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.promises.readdir(path.join(root, INSTANCES_DIR));
  } catch {
    return [];
  }
  const ids = new Set<string>();
  for (const name of names) {
    const match = /^([a-z0-9-]{8,64})\.(json|lock)$/.exec(name);
    if (match?.[1] !== undefined) ids.add(match[1]);
  }
  return [...ids];
}

/** Removes a dead instance's record and lock. Callers must have proven it dead. */
export async function forgetInstance(fs: FsPort, root: string, id: string): Promise<void> {
  await fs.promises.rm(lockPath(root, id), { recursive: true, force: true });
  await fs.promises.rm(infoPath(root, id), { force: true });
}
