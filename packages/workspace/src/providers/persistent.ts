import { randomUUID } from "node:crypto";
import * as path from "node:path";
import { seedBootstrap } from "../bootstrap.ts";
import { WorkspaceError, describeError, errnoCode } from "../errors.ts";
import { type FsPort, nodeFsPort } from "../fs-port.ts";
import { type AgentWorkspaceConfig, DEFAULT_AGENT_ID, keyHash, normalizeAgentId, resolveAgentWorkspaceDir, slugKey } from "../paths.ts";
import { type WorkspaceLease, type WorkspaceProvider, toRecord } from "../types.ts";
import { assertKey, assertLeaseKind } from "./shared.ts";

export interface PersistentProviderOptions extends AgentWorkspaceConfig {
  /**
   * `"agent"` (default): one workspace per agent, by upstream's path rules.
   * `"session"`: the legacy per-session layout, `<stateDir>/workspace-<slug>-<hash>` per key, kept
   * on release (for callers who want the old behaviour).
   */
  layout?: "agent" | "session" | undefined;
  /** `agents.defaults.skipBootstrap`: do not seed bootstrap files into new directories. Default false. */
  skipBootstrap?: boolean | undefined;
  fs?: FsPort | undefined;
}

/**
 * Named agents' workspaces. Creates the directory if missing (seeding the bootstrap files into a
 * brand-new directory only), adopts it otherwise, and never deletes anything on release.
 */
export function createPersistentProvider(options: PersistentProviderOptions): WorkspaceProvider {
  if (typeof options.stateDir !== "string" || !path.isAbsolute(options.stateDir)) {
    throw new WorkspaceError("WS_INVALID_OPTIONS", `stateDir must be an absolute path, got ${JSON.stringify(options.stateDir)}`);
  }
  const fs = options.fs ?? nodeFsPort;
  const layout = options.layout ?? "agent";
  const defaultAgentId = normalizeAgentId(options.defaultAgentId ?? DEFAULT_AGENT_ID);
  const live = new Map<string, WorkspaceLease>();
  let closed = false;

  function directoryFor(key: string, agentId: string): string {
    if (layout === "session") return path.resolve(options.stateDir, `workspace-${slugKey(key)}-${keyHash(key)}`);
    return resolveAgentWorkspaceDir(agentId, options);
  }

  async function ensureDirectory(dir: string): Promise<boolean> {
    try {
      await fs.promises.mkdir(path.dirname(dir), { recursive: true });
      await fs.promises.mkdir(dir, { mode: 0o755 });
      return true;
    } catch (error) {
      if (errnoCode(error) !== "EEXIST") {
        throw new WorkspaceError("WS_CREATE_FAILED", `Cannot create the workspace "${dir}" (${errnoCode(error) ?? describeError(error)})`, {
          cause: error,
          path: dir,
          fix: "Check that the state directory is writable and has free space",
        });
      }
    }
    // Adopted: an existing directory (a link to one is the user's choice, as upstream allows).
    const st = await fs.promises.stat(dir).catch(() => null);
    if (st === null || !st.isDirectory()) {
      throw new WorkspaceError("WS_CREATE_FAILED", `The workspace path "${dir}" exists but is not a directory`, {
        path: dir,
        fix: "Move the file aside or configure another workspace path for this agent",
      });
    }
    return false;
  }

  return {
    kind: "persistent",
    removesOnRelease: false,
    perKey: layout === "session",
    root: null,
    async acquire(request) {
      if (closed) throw new WorkspaceError("WS_CLOSED", "This persistent provider is closed");
      assertKey(request.key);
      const agentId = normalizeAgentId(request.agentId ?? defaultAgentId);
      const dir = directoryFor(request.key, agentId);
      const leaseId = randomUUID();
      await request.beforeCreate?.({ leaseId, path: dir, key: request.key });
      const created = await ensureDirectory(dir);
      if (created && options.skipBootstrap !== true) {
        try {
          await seedBootstrap(fs, dir);
        } catch (error) {
          throw new WorkspaceError("WS_SEED_FAILED", `Cannot write bootstrap files into "${dir}" (${errnoCode(error) ?? describeError(error)})`, {
            cause: error,
            path: dir,
            fix: "Check free space and permissions; the directory is kept and the missing files are written on the next new directory only",
          });
        }
      }
      const lease: WorkspaceLease = { leaseId, kind: "persistent", key: request.key, agentId, path: dir, createdAt: Date.now(), created };
      live.set(leaseId, lease);
      return lease;
    },
    async release(lease, reason) {
      assertLeaseKind(lease, "persistent");
      live.delete(lease.leaseId);
      return { leaseId: lease.leaseId, outcome: "kept", reason };
    },
    async list() {
      return [...live.values()].map(toRecord);
    },
    async close() {
      closed = true;
    },
  };
}
