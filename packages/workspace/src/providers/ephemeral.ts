import { randomUUID } from "node:crypto";
import * as path from "node:path";
import { seedBootstrap, seedFromDirectory } from "../bootstrap.ts";
import { WorkspaceError, describeError, errnoCode } from "../errors.ts";
import { type FsPort, nodeFsPort } from "../fs-port.ts";
import { type InstanceHandle, type LivenessOptions, registerInstance } from "../instance.ts";
import { buildMarker, writeMarker } from "../marker.ts";
import { DEFAULT_AGENT_ID, isDirectChild, leaseDirName, normalizeAgentId } from "../paths.ts";
import { safeRemove } from "../remove.ts";
import { type LooseRootPolicy, currentUid, defaultEphemeralRoot, ensurePrivateRoot } from "../root.ts";
import type { DirIdentity, ReleaseReason, ReleaseResult, WorkspaceLease, WorkspaceProvider } from "../types.ts";
import { toRecord } from "../types.ts";
import { assertKey, assertLeaseKind } from "./shared.ts";

export interface EphemeralProviderOptions {
  /** Private per-user root. Default `<os.tmpdir()>/openclaw-<uid>`. Created 0700; refused if unsafe. */
  root?: string | undefined;
  /** What goes into a new workspace when the request names no `seedFrom`: the bootstrap templates (default) or nothing. */
  seed?: "templates" | "none" | undefined;
  /** Live leases at most; the next acquire fails with WS_LIMIT_REACHED. Default 10,000. */
  maxLeases?: number | undefined;
  /** A root of ours with group/other bits: tighten to 0700 (default) or refuse. */
  looseRoot?: LooseRootPolicy | undefined;
  /** Agent id used when a request names none. Default `main`. */
  defaultAgentId?: string | undefined;
  /** The owning instance. Default: one registered by the provider and closed with it. */
  instance?: InstanceHandle | undefined;
  /** Liveness timing for the instance the provider registers itself. */
  liveness?: LivenessOptions | undefined;
  fs?: FsPort | undefined;
}

export interface EphemeralProvider extends WorkspaceProvider {
  readonly kind: "ephemeral";
  readonly root: string;
  readonly instance: InstanceHandle;
}

export const DEFAULT_MAX_LEASES = 10_000;

/**
 * Implicit sessions' workspaces: one private directory per lease under a private per-user root,
 * named from a bounded slug of the key plus a hash and randomness, with an ownership marker, and
 * removed safely (and idempotently) on release. Verifies the root before it resolves.
 */
export async function createEphemeralProvider(options: EphemeralProviderOptions = {}): Promise<EphemeralProvider> {
  const fs = options.fs ?? nodeFsPort;
  const maxLeases = options.maxLeases ?? DEFAULT_MAX_LEASES;
  if (!Number.isInteger(maxLeases) || maxLeases < 1) {
    throw new WorkspaceError("WS_INVALID_OPTIONS", `maxLeases must be a positive integer, got ${maxLeases}`);
  }
  if (options.instance !== undefined && options.liveness !== undefined) {
    throw new WorkspaceError("WS_INVALID_OPTIONS", "Pass either instance or liveness, not both: liveness only applies to an instance the provider registers");
  }
  if (options.root !== undefined && !path.isAbsolute(options.root)) {
    throw new WorkspaceError("WS_INVALID_OPTIONS", `The ephemeral root "${options.root}" is not an absolute path`, { path: options.root });
  }
  const root = path.resolve(options.root ?? defaultEphemeralRoot());
  if (options.instance !== undefined && path.resolve(options.instance.root) !== root) {
    throw new WorkspaceError("WS_INVALID_OPTIONS", `The instance belongs to "${options.instance.root}", not to "${root}"`);
  }
  let rootIdentity = await ensurePrivateRoot(fs, root, options.looseRoot ?? "tighten");
  const instance = options.instance ?? (await registerInstance({ root, fs, ...options.liveness }));
  const ownsInstance = options.instance === undefined;
  const defaultAgentId = normalizeAgentId(options.defaultAgentId ?? DEFAULT_AGENT_ID);
  const seedMode = options.seed ?? "templates";
  const uid = currentUid();

  const live = new Map<string, WorkspaceLease>();
  /** Acquires under way: they count against maxLeases before they reach `live`. */
  let acquiring = 0;
  const releasing = new Map<string, Promise<ReleaseResult>>();
  let closed = false;

  /** Cheap re-check on every acquire: the root is still the directory we verified. */
  async function checkRoot(): Promise<void> {
    let st;
    try {
      st = await fs.promises.lstat(root, { bigint: true });
    } catch (error) {
      if (errnoCode(error) !== "ENOENT") {
        throw new WorkspaceError("WS_ROOT_UNAVAILABLE", `Cannot inspect the ephemeral root "${root}" (${errnoCode(error) ?? describeError(error)})`, { cause: error, path: root });
      }
      // Gone (an OS temp cleaner, a reboot-time wipe of a tmpfs): make it again, with every check.
      // The instance lock went with it; the instance takes it again on its own.
      rootIdentity = await ensurePrivateRoot(fs, root, options.looseRoot ?? "tighten");
      return;
    }
    if (st.isSymbolicLink() || !st.isDirectory() || st.dev.toString() !== rootIdentity.dev || st.ino.toString() !== rootIdentity.ino) {
      throw new WorkspaceError("WS_ROOT_UNSAFE", `The ephemeral root "${root}" was replaced after it was verified`, { path: root });
    }
  }

  /**
   * Removes a directory this acquire just made and says what became of it. A failure leaves a
   * trash entry (collectable) or the directory itself (the caller's ledger recorded its path
   * through beforeCreate, which is the proof the gateway's collector uses).
   */
  async function undo(dir: string, identity: DirIdentity): Promise<string> {
    const result = await safeRemove({ fs, root, target: dir, identity, trashTag: instance.id });
    if (result.outcome === "removed" || result.outcome === "gone") return "the new directory was removed again";
    if (result.outcome === "trashed") return `the new directory was moved to "${result.trashPath}" for the collector`;
    return `the new directory could not be removed and is left at "${dir}" (${"error" in result ? result.error.message : result.outcome})`;
  }

  async function acquire(request: Parameters<WorkspaceProvider["acquire"]>[0]): Promise<WorkspaceLease> {
    if (closed) throw new WorkspaceError("WS_CLOSED", `The ephemeral provider for "${root}" is closed`);
    assertKey(request.key);
    if (live.size + acquiring >= maxLeases) {
      throw new WorkspaceError("WS_LIMIT_REACHED", `The ephemeral provider holds ${live.size} live leases (${acquiring} more being acquired), its maximum`);
    }
    acquiring += 1;
    try {
      return await createLease(request);
    } finally {
      acquiring -= 1;
    }
  }

  async function createLease(request: Parameters<WorkspaceProvider["acquire"]>[0]): Promise<WorkspaceLease> {
    await checkRoot();
    const agentId = normalizeAgentId(request.agentId ?? defaultAgentId);
    const leaseId = randomUUID();
    const dir = path.join(root, leaseDirName(request.key));
    await request.beforeCreate?.({ leaseId, path: dir, key: request.key });

    try {
      await fs.createLeaseDir(root, path.basename(dir));
    } catch (error) {
      throw new WorkspaceError("WS_CREATE_FAILED", `Cannot create a workspace in "${root}" (${errnoCode(error) ?? describeError(error)})`, {
        cause: error,
        path: dir,
      });
    }

    // Only a real directory of ours at the new name is ever written into, or removed on failure.
    const st = await fs.promises.lstat(dir, { bigint: true }).catch(() => null);
    if (st === null || !st.isDirectory() || st.isSymbolicLink() || (uid !== undefined && st.uid !== BigInt(uid))) {
      throw new WorkspaceError("WS_CREATE_FAILED", `The new workspace "${dir}" is missing or is not a directory of this user right after creation; it was left untouched`, {
        path: dir,
        fix: "Something else created or replaced this entry inside the private root: inspect it by hand",
      });
    }
    const identity: DirIdentity = { dev: st.dev.toString(), ino: st.ino.toString() };
    const createdAt = Date.now();
    try {
      await writeMarker(fs, dir, buildMarker({ leaseId, instanceId: instance.id, dir, key: request.key, agentId, createdAt, identity }));
    } catch (error) {
      const fate = await undo(dir, identity);
      throw new WorkspaceError("WS_MARKER_FAILED", `Cannot write the ownership marker in "${dir}" (${errnoCode(error) ?? describeError(error)}); ${fate}`, { cause: error, path: dir });
    }
    try {
      if (request.seedFrom !== undefined) await seedFromDirectory(fs, request.seedFrom, dir);
      else if (seedMode === "templates") await seedBootstrap(fs, dir);
    } catch (error) {
      const fate = await undo(dir, identity);
      throw new WorkspaceError(
        "WS_SEED_FAILED",
        `Cannot seed the workspace "${dir}"${request.seedFrom === undefined ? "" : ` from "${request.seedFrom}"`} (${errnoCode(error) ?? describeError(error)}); ${fate}`,
        { cause: error, path: dir },
      );
    }
    const lease: WorkspaceLease = { leaseId, kind: "ephemeral", key: request.key, agentId, path: dir, createdAt, identity, instanceId: instance.id, created: true };
    live.set(leaseId, lease);
    return lease;
  }

  async function doRelease(lease: WorkspaceLease, reason: ReleaseReason): Promise<ReleaseResult> {
    const target = lease.path as string;
    const result = await safeRemove({
      fs,
      root,
      target,
      identity: lease.identity,
      trashTag: instance.id,
      onTrash: (trashPath, done) => (done ? instance.busyTrash.delete(trashPath) : instance.busyTrash.add(trashPath)),
    });
    if (result.outcome !== "failed") live.delete(lease.leaseId);
    return { leaseId: lease.leaseId, reason, ...result };
  }

  return {
    kind: "ephemeral",
    removesOnRelease: true,
    perKey: true,
    root,
    instance,
    acquire,
    async release(lease, reason) {
      assertLeaseKind(lease, "ephemeral");
      if (lease.path === null || !isDirectChild(root, lease.path)) {
        return {
          leaseId: lease.leaseId,
          reason,
          outcome: "refused",
          error: new WorkspaceError("WS_OUTSIDE_ROOT", `Refusing to release "${lease.path}": it is not directly inside "${root}"`, { path: lease.path ?? undefined }),
        };
      }
      const pending = releasing.get(lease.leaseId);
      if (pending !== undefined) return pending;
      const run = doRelease(lease, reason).finally(() => releasing.delete(lease.leaseId));
      releasing.set(lease.leaseId, run);
      return run;
    },
    async list() {
      return [...live.values()].map(toRecord);
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.allSettled(releasing.values());
      if (ownsInstance) await instance.close();
    },
  };
}
