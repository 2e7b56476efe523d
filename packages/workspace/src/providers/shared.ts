import { WorkspaceError } from "../errors.ts";
import type { WorkspaceKind, WorkspaceLease } from "../types.ts";

export const KEY_MAX_CHARS = 65_536;

/** A key is a non-empty string and nothing else: arrays and objects with a toString are refused. */
export function assertKey(key: unknown): asserts key is string {
  if (typeof key !== "string" || key.length === 0 || key.length > KEY_MAX_CHARS) {
    throw new WorkspaceError(
      "WS_INVALID_KEY",
      typeof key === "string" ? `A session key of ${key.length} characters is not allowed` : `A session key must be a string, got ${Array.isArray(key) ? "array" : typeof key}`,
    );
  }
}

export function assertLeaseKind(lease: WorkspaceLease, kind: WorkspaceKind): void {
  if (lease.kind !== kind) {
    throw new WorkspaceError("WS_LEASE_MISMATCH", `A ${lease.kind} lease (${lease.leaseId}) was handed to the ${kind} provider`);
  }
}
