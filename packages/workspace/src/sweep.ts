import * as path from "node:path";
import pLimit from "p-limit";
import lockfile from "proper-lockfile";
import { z } from "zod";
import { WorkspaceError, describeError, errnoCode } from "./errors.ts";
import { type FsPort, nodeFsPort } from "./fs-port.ts";
import {
  type InstanceHandle,
  type LivenessOptions,
  createLivenessProbe,
  currentProcess,
  forgetInstance,
  listInstanceIds,
  memoizeLiveness,
  processIdentityFields,
  processProvenDead,
} from "./instance.ts";
import { readMarker } from "./marker.ts";
import { COLLECTOR_LOCK, INSTANCES_DIR, TRASH_PREFIX, randomSuffix } from "./paths.ts";
import { removeTree } from "./remove-tree.ts";
import { safeRemove } from "./remove.ts";
import { verifyPrivateRoot } from "./root.ts";

export interface SweepOptions extends LivenessOptions {
  /** The ephemeral root to walk. A missing root is an empty sweep; an unsafe one is refused (WS_ROOT_UNSAFE). */
  root: string;
  /** The sweeping instance, whose own leases are alive by definition. */
  instance?: InstanceHandle | undefined;
  /** Decide and return the plan, delete nothing. Default false. */
  dryRun?: boolean | undefined;
  /** Entries inspected or removed at once. Default 8 (1–64). */
  concurrency?: number | undefined;
  /** Called after each entry is decided (phase `scan`) and after each removal (phase `reclaim`). */
  onProgress?: ((progress: SweepProgress) => void) | undefined;
  /**
   * The ledger's open leases, by directory path (the gateway's store). A directory without a
   * valid marker is still provably ours when a claim names its path and its device and inode
   * both match: it is then kept while the claim's instance is alive and reclaimed once that
   * instance is proven dead. Without a matching claim it is only reported.
   */
  claims?: ReadonlyMap<string, LedgerClaim> | undefined;
  /**
   * Called once, before the dead instances' entries (leases and trash) are removed, with all of
   * them: the gateway kills the processes still working in them (a crashed gateway's runs outlive
   * it). It resolves with why each entry it could not clear must stay, by path; those are left for
   * the next sweep (`outcome: "failed"`), so nothing is removed under a process that could not be
   * stopped. If it rejects, every entry stays.
   */
  beforeReclaim?: ((entries: readonly SweepEntry[]) => Promise<ReadonlyMap<string, string>>) | undefined;
  fs?: FsPort | undefined;
}

/** What a ledger recorded of one lease: proof of ownership that does not depend on the marker. */
export interface LedgerClaim {
  readonly leaseId: string;
  readonly instanceId: string;
  readonly key: string;
  readonly createdAt: number;
  /** The directory's device and inode numbers recorded when the lease went live, as decimal strings. */
  readonly dev: string;
  readonly ino: string;
}

export type SweepEntryKind = "lease" | "trash" | "unknown";
export type SweepAction = "reclaim" | "keep" | "report";

export interface SweepEntry {
  readonly name: string;
  readonly path: string;
  readonly kind: SweepEntryKind;
  /** reclaim: ours and dead; keep: ours and alive; report: not provably ours, never deleted. */
  readonly action: SweepAction;
  /** Why this action, in words. */
  readonly reason: string;
  readonly instanceId?: string | undefined;
  readonly leaseId?: string | undefined;
  readonly key?: string | undefined;
  readonly createdAt?: number | undefined;
  /** For lease entries: what proved the directory ours, its marker or (marker missing or invalid) a ledger claim. */
  readonly proof?: "marker" | "ledger" | undefined;
  /** For reclaim entries of a real run: what removal did. `planned` in a dry run. */
  outcome?: "planned" | "removed" | "gone" | "refused" | "failed" | "trashed" | undefined;
  error?: WorkspaceError | undefined;
}

export interface SweepProgress {
  readonly phase: "scan" | "reclaim";
  readonly done: number;
  readonly total: number;
  readonly entry: SweepEntry;
}

export interface SweepResult {
  readonly root: string;
  readonly dryRun: boolean;
  readonly entries: SweepEntry[];
  /** Reclaim entries removed (or already gone); in a dry run, the number planned. */
  readonly reclaimed: number;
  readonly kept: number;
  readonly reported: number;
  /** Reclaim entries that could not be removed (refused, failed, or left as trash). */
  readonly failed: number;
  /** Records of dead instances that had nothing left and were forgotten. */
  readonly forgottenInstances: number;
  readonly durationMs: number;
}

const LIVE_NAMES = new Set([INSTANCES_DIR, `${COLLECTOR_LOCK}.lock`]);

/**
 * The collector. Walks an ephemeral root and reclaims a directory only when it can prove it is
 * ours and dead: a valid marker naming this directory (same name, device and inode) whose owner
 * instance is proven dead; failing the marker, a ledger claim (`claims`) naming its path, device
 * and inode whose instance is proven dead; or a `.trash-*` entry whose owner is dead (or is us and idle).
 * Everything else is kept or reported, never deleted. One collector per root at a time
 * (WS_GC_BUSY otherwise); bounded concurrency; a dry run returns the exact plan.
 */
export async function sweep(options: SweepOptions): Promise<SweepResult> {
  const started = performance.now();
  const fs = options.fs ?? nodeFsPort;
  const root = path.resolve(options.root);
  const dryRun = options.dryRun ?? false;
  const concurrency = options.concurrency ?? 8;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) {
    throw new WorkspaceError("WS_INVALID_OPTIONS", `concurrency must be an integer from 1 to 64, got ${concurrency}`);
  }
  const empty = (): SweepResult => ({ root, dryRun, entries: [], reclaimed: 0, kept: 0, reported: 0, failed: 0, forgottenInstances: 0, durationMs: performance.now() - started });
  try {
    await fs.promises.lstat(root);
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return empty();
  }
  await verifyPrivateRoot(fs, root, "refuse");

  const unlock = await takeCollectorLock(fs, root, options);
  try {
    const probe = createLivenessProbe({ root, fs, staleMs: options.staleMs, heartbeatMs: options.heartbeatMs });
    const alive = memoizeLiveness(probe, options.instance);
    const limit = pLimit(concurrency);
    const names = (await fs.promises.readdir(root)).filter((name) => !LIVE_NAMES.has(name));
    let scanned = 0;
    const entries = await Promise.all(
      names.map((name) =>
        limit(async () => {
          const entry = await classify(fs, root, name, alive, options);
          options.onProgress?.({ phase: "scan", done: ++scanned, total: names.length, entry });
          return entry;
        }),
      ),
    );
    const toReclaim = entries.filter((entry) => entry.action === "reclaim");
    const blocked = dryRun ? new Map<string, string>() : await blockers(toReclaim, options.beforeReclaim);
    let removed = 0;
    await Promise.all(
      toReclaim.map((entry) =>
        limit(async () => {
          if (dryRun) entry.outcome = "planned";
          else if (!isBlocked(entry, blocked)) await reclaim(fs, root, entry, options.instance?.id ?? `collector-${randomSuffix(8)}`, options.claims);
          options.onProgress?.({ phase: "reclaim", done: ++removed, total: toReclaim.length, entry });
        }),
      ),
    );
    const forgottenInstances = dryRun ? 0 : await forgetDeadInstances(fs, root, entries, alive);
    const ok = (entry: SweepEntry): boolean => entry.outcome === "removed" || entry.outcome === "gone" || entry.outcome === "planned";
    return {
      root,
      dryRun,
      entries,
      reclaimed: toReclaim.filter(ok).length,
      kept: entries.filter((entry) => entry.action === "keep").length,
      reported: entries.filter((entry) => entry.action === "report").length,
      failed: toReclaim.filter((entry) => !ok(entry)).length,
      forgottenInstances,
      durationMs: performance.now() - started,
    };
  } finally {
    await unlock();
  }
}

/**
 * Takes `<root>/.collector.lock`. Each collector first records itself (pid, host, boot id, pid
 * namespace) in `.instances/collector-<random>.owner`, before it tries the lock, so a holder that
 * dies at any point while it holds the lock has left a record. A held lock is taken over at once
 * when there are other collectors' records and every one of them is proven dead by the pid fast
 * path: the holder crashed mid-sweep. Otherwise it is busy until it goes stale (staleMs).
 */
async function takeCollectorLock(fs: FsPort, root: string, options: SweepOptions): Promise<() => Promise<void>> {
  const file = path.join(root, COLLECTOR_LOCK);
  const lockPath = `${file}.lock`;
  const lock = (): Promise<() => Promise<void>> =>
    lockfile.lock(file, {
      lockfilePath: lockPath,
      realpath: false,
      retries: 0,
      stale: options.staleMs ?? 60_000,
      fs: fs.lockFs,
      // Losing the collector lock mid-sweep only risks a second collector deciding the same way.
      onCompromised: () => undefined,
    });
  const failure = (error: unknown): WorkspaceError =>
    errnoCode(error) === "ELOCKED"
      ? new WorkspaceError("WS_GC_BUSY", `Another collector is sweeping "${root}"`, { cause: error, path: root })
      : new WorkspaceError("WS_ROOT_UNAVAILABLE", `Cannot take the collector lock in "${root}" (${errnoCode(error) ?? describeError(error)})`, { cause: error, path: root });
  const mine = await writeCollectorRecord(fs, root);
  const dropMine = (): Promise<void> => (mine === null ? Promise.resolve() : fs.promises.rm(mine, { force: true }).catch(() => undefined));
  let unlock: () => Promise<void>;
  try {
    unlock = await lock();
  } catch (error) {
    const others = errnoCode(error) === "ELOCKED" ? await readCollectorRecords(fs, root, mine) : [];
    if (others.length === 0 || !others.every((other) => other.owner !== null && processProvenDead(other.owner))) {
      await dropMine();
      throw failure(error);
    }
    await Promise.all(others.map((other) => fs.promises.rm(other.path, { force: true }).catch(() => undefined)));
    await fs.promises.rmdir(lockPath).catch(() => undefined);
    try {
      unlock = await lock();
    } catch (retryError) {
      await dropMine();
      throw failure(retryError);
    }
  }
  return async () => {
    try {
      await unlock();
    } finally {
      await dropMine();
    }
  };
}

const COLLECTOR_RECORD = /^collector-[a-z0-9]{10}\.owner$/;

const collectorRecordSchema = z.strictObject({ v: z.literal(1), ...processIdentityFields });

/** Writes this collector's record (never through a planted link: O_EXCL); null if it cannot. */
async function writeCollectorRecord(fs: FsPort, root: string): Promise<string | null> {
  const dir = path.join(root, INSTANCES_DIR);
  const record = path.join(dir, `collector-${randomSuffix(10)}.owner`);
  try {
    await fs.promises.mkdir(dir, { mode: 0o700 }).catch((error: unknown) => {
      if (errnoCode(error) !== "EEXIST") throw error;
    });
    await fs.promises.writeFile(record, JSON.stringify({ v: 1, ...currentProcess() }), { flag: "wx", mode: 0o600 });
    return record;
  } catch {
    return null;
  }
}

/** Other collectors' records; `owner` is null for one that cannot be read or validated (it counts as alive). */
async function readCollectorRecords(fs: FsPort, root: string, mine: string | null): Promise<{ path: string; owner: z.infer<typeof collectorRecordSchema> | null }[]> {
  const dir = path.join(root, INSTANCES_DIR);
  const names = await fs.promises.readdir(dir).catch(() => [] as string[]);
  const records = names.map((name) => path.join(dir, name)).filter((record) => COLLECTOR_RECORD.test(path.basename(record)) && record !== mine);
  return Promise.all(
    records.map(async (record) => {
      try {
        const st = await fs.promises.lstat(record);
        if (!st.isFile() || st.size > 4096) return { path: record, owner: null };
        const parsed = collectorRecordSchema.safeParse(JSON.parse(await fs.promises.readFile(record, "utf8")));
        return { path: record, owner: parsed.success ? parsed.data : null };
      } catch {
        return { path: record, owner: null };
      }
    }),
  );
}

const TRASH_NAME = /^\.trash-([a-z0-9-]{8,64})-[a-z0-9]{10}$/;

async function classify(fs: FsPort, root: string, name: string, alive: (id: string) => Promise<boolean>, options: SweepOptions): Promise<SweepEntry> {
  const self = options.instance;
  const entryPath = path.join(root, name);
  const base = { name, path: entryPath };
  let st;
  try {
    st = await fs.promises.lstat(entryPath, { bigint: true });
  } catch (error) {
    return { ...base, kind: "unknown", action: "report", reason: `cannot inspect (${errnoCode(error) ?? "error"})` };
  }
  if (st.isSymbolicLink()) return { ...base, kind: "unknown", action: "report", reason: "symlink: not ours to delete" };
  if (!st.isDirectory()) return { ...base, kind: "unknown", action: "report", reason: "not a directory" };

  if (name.startsWith(TRASH_PREFIX)) {
    const owner = TRASH_NAME.exec(name)?.[1];
    if (owner === undefined) return { ...base, kind: "unknown", action: "report", reason: "trash-like name not made by ocgw" };
    if (self !== undefined && owner === self.id) {
      return self.busyTrash.has(entryPath)
        ? { ...base, kind: "trash", action: "keep", reason: "being deleted by this instance", instanceId: owner }
        : { ...base, kind: "trash", action: "reclaim", reason: "left over by this instance", instanceId: owner };
    }
    return (await alive(owner))
      ? { ...base, kind: "trash", action: "keep", reason: "its instance is alive and may be deleting it", instanceId: owner }
      : { ...base, kind: "trash", action: "reclaim", reason: "trash of a dead instance", instanceId: owner };
  }

  const identity = { dev: st.dev.toString(), ino: st.ino.toString() };
  const read = await readMarker(fs, entryPath);
  if (!read.ok) return classifyByLedger(base, identity, options.claims?.get(entryPath), alive, read.reason);
  const marker = read.marker;
  const details = { instanceId: marker.instanceId, leaseId: marker.leaseId, key: marker.key, createdAt: marker.createdAt, proof: "marker" as const };
  if (marker.name !== name || marker.dev !== identity.dev || marker.ino !== identity.ino) {
    const claim = options.claims?.get(entryPath);
    if (claim !== undefined) return classifyByLedger(base, identity, claim, alive, "marker belongs to another directory (copied or moved)");
    return { ...base, ...details, kind: "unknown", action: "report", reason: "marker belongs to another directory (copied or moved)" };
  }
  return (await alive(marker.instanceId))
    ? { ...base, ...details, kind: "lease", action: "keep", reason: "owner instance is alive" }
    : { ...base, ...details, kind: "lease", action: "reclaim", reason: "owner instance is dead" };
}

/**
 * A directory its marker does not prove ours (`why`): a lease only when a ledger claim names its
 * path (the caller looked it up by path) and the same device and inode; otherwise reported.
 */
async function classifyByLedger(
  base: { name: string; path: string },
  identity: { dev: string; ino: string },
  claim: LedgerClaim | undefined,
  alive: (id: string) => Promise<boolean>,
  why: string,
): Promise<SweepEntry> {
  if (claim === undefined) return { ...base, kind: "unknown", action: "report", reason: why };
  if (claim.dev !== identity.dev || claim.ino !== identity.ino) {
    return { ...base, kind: "unknown", action: "report", reason: `${why}; the ledger's lease at this path was another directory (device/inode differ)` };
  }
  const details = { instanceId: claim.instanceId, leaseId: claim.leaseId, key: claim.key, createdAt: claim.createdAt, proof: "ledger" as const };
  return (await alive(claim.instanceId))
    ? { ...base, ...details, kind: "lease", action: "keep", reason: `owner instance is alive (${why}; the ledger proves it ours)` }
    : { ...base, ...details, kind: "lease", action: "reclaim", reason: `owner instance is dead (${why}; the ledger proves it ours: path, device and inode)` };
}

/** Runs the `beforeReclaim` hook once: why each entry must stay, by path (every entry when it rejects). */
async function blockers(entries: readonly SweepEntry[], hook: SweepOptions["beforeReclaim"]): Promise<ReadonlyMap<string, string>> {
  if (hook === undefined || entries.length === 0) return new Map();
  try {
    return await hook(entries);
  } catch (error) {
    return new Map(entries.map((entry) => [entry.path, describeError(error)]));
  }
}

/** Marks an entry the hook could not clear as failed; true when it must stay. */
function isBlocked(entry: SweepEntry, blocked: ReadonlyMap<string, string>): boolean {
  const why = blocked.get(entry.path);
  if (why === undefined) return false;
  entry.outcome = "failed";
  entry.error = new WorkspaceError("WS_REMOVE_FAILED", `Not removing "${entry.path}": ${why}`, { path: entry.path });
  return true;
}

async function reclaim(fs: FsPort, root: string, entry: SweepEntry, trashTag: string, claims: ReadonlyMap<string, LedgerClaim> | undefined): Promise<void> {
  if (entry.kind === "trash") {
    try {
      await removeTree(fs, root, entry.path);
      entry.outcome = "removed";
    } catch (error) {
      entry.outcome = "failed";
      entry.error = new WorkspaceError("WS_REMOVE_FAILED", `Cannot delete the trash entry "${entry.path}" (${errnoCode(error) ?? describeError(error)})`, { cause: error, path: entry.path });
    }
    return;
  }
  const claim = claims?.get(entry.path);
  if (entry.proof === "ledger" && claim !== undefined) {
    await removeAs(fs, root, entry, { dev: claim.dev, ino: claim.ino }, trashTag);
    return;
  }
  // Re-read right before removal: the identity in the marker is what safeRemove must find.
  const read = await readMarker(fs, entry.path);
  if (!read.ok) {
    // "No marker" is "gone" only when the directory went with it: one that lost its marker is not provably ours.
    const present = await fs.promises.lstat(entry.path).then(
      () => true,
      (error: unknown) => errnoCode(error) !== "ENOENT",
    );
    entry.outcome = read.reason === "no marker" && !present ? "gone" : "refused";
    return;
  }
  await removeAs(fs, root, entry, { dev: read.marker.dev, ino: read.marker.ino }, trashTag);
}

/** safeRemove of a lease entry that must still be the directory `identity` names. */
async function removeAs(fs: FsPort, root: string, entry: SweepEntry, identity: { dev: string; ino: string }, trashTag: string): Promise<void> {
  const result = await safeRemove({ fs, root, target: entry.path, identity, trashTag });
  entry.outcome = result.outcome;
  if ("error" in result) entry.error = result.error;
}

/** Forgets dead instances' records once nothing of theirs is left in the root. */
async function forgetDeadInstances(fs: FsPort, root: string, entries: SweepEntry[], alive: (id: string) => Promise<boolean>): Promise<number> {
  const stillReferenced = new Set(
    entries.filter((entry) => entry.outcome !== "removed" && entry.outcome !== "gone").flatMap((entry) => (entry.instanceId === undefined ? [] : [entry.instanceId])),
  );
  let forgotten = 0;
  for (const id of await listInstanceIds(fs, root)) {
    if (stillReferenced.has(id) || (await alive(id))) continue;
    await forgetInstance(fs, root, id).catch(() => undefined);
    forgotten += 1;
  }
  return forgotten;
}
