import { randomUUID } from "node:crypto";
import { WorkspaceError } from "../errors.ts";
import { DEFAULT_AGENT_ID, normalizeAgentId } from "../paths.ts";
import { type WorkspaceLease, type WorkspaceProvider, toRecord } from "../types.ts";
import { assertKey, assertLeaseKind } from "./shared.ts";

export interface NoneProviderOptions {
  /** Agent id used when a request names none. Default `main`. */
  defaultAgentId?: string | undefined;
}

/** No directory at all (`workspace: false`, or `workspace.implicit: "none"`): the agent runs with no cwd of its own. */
export function createNoneProvider(options: NoneProviderOptions = {}): WorkspaceProvider {
  const defaultAgentId = normalizeAgentId(options.defaultAgentId ?? DEFAULT_AGENT_ID);
  const live = new Map<string, WorkspaceLease>();
  let closed = false;
  return {
    kind: "none",
    removesOnRelease: false,
    perKey: false,
    root: null,
    async acquire(request) {
      if (closed) throw new WorkspaceError("WS_CLOSED", "This none provider is closed");
      assertKey(request.key);
      const leaseId = randomUUID();
      await request.beforeCreate?.({ leaseId, path: null, key: request.key });
      const lease: WorkspaceLease = {
        leaseId,
        kind: "none",
        key: request.key,
        agentId: normalizeAgentId(request.agentId ?? defaultAgentId),
        path: null,
        createdAt: Date.now(),
        created: false,
      };
      live.set(lease.leaseId, lease);
      return lease;
    },
    async release(lease, reason) {
      assertLeaseKind(lease, "none");
      live.delete(lease.leaseId);
      return { leaseId: lease.leaseId, outcome: "none", reason };
    },
    async list() {
      return [...live.values()].map(toRecord);
    },
    async close() {
      closed = true;
    },
  };
}
