import { lstat } from "node:fs/promises";
import * as path from "node:path";
import { createLivenessProbe, memoizeLiveness, sweep } from "@ocgw/workspace";
import type { GatewayClient } from "../client/connect.ts";
import { remoteErrorCode, remoteErrorOf } from "../client/connect.ts";
import type { GcSummary } from "../collector.ts";
import type { LeaseRecord, LeaseState } from "../store/index.ts";
import { mapLimit } from "../util/map-limit.ts";
import { type OfflineOptions, createdAtOf, directorySize, loadOfflineTarget, openExistingStore, retryWhileBusy } from "./common.ts";
import { listAllSessions } from "./sessions.ts";

/**
 * What a workspace is, for an operator:
 * - `live`: a ledger row (acquiring/live) of an alive instance, directory present;
 * - `idle`: live, but its session has no active run (only a running gateway can tell);
 * - `released`: a released ledger row (history);
 * - `orphaned`: a marked directory whose owner is dead, or a `.trash-*` leftover: `gc` reclaims it;
 * - `unknown`: an entry of the ephemeral root without a valid marker: never deleted automatically.
 */
export type WorkspaceState = "live" | "idle" | "released" | "orphaned" | "unknown";

export const WORKSPACE_STATES: readonly WorkspaceState[] = ["live", "idle", "orphaned", "unknown", "released"];

/** One row of `ocgw workspaces ls`. */
export interface WorkspaceRow {
  /** The directory; null for a lease without one. */
  readonly path: string | null;
  /** The session's workspace mode (`ephemeral`, `agent`, `persistent`), `trash`, or `-` when unknown. */
  readonly mode: string;
  /** The owning session key, when the ledger or the marker names one. */
  readonly sessionKey: string | null;
  readonly state: WorkspaceState;
  /** Why this state, in words. */
  readonly reason: string;
  readonly leaseId: string | null;
  readonly instanceId: string | null;
  /** ms since epoch: the lease's creation, else the directory's birth time or mtime. */
  readonly createdAt: number | null;
  /** now − createdAt, in ms. */
  readonly ageMs: number | null;
  /** Recursive byte total (links not followed); null when there is no directory to measure. */
  readonly sizeBytes: number | null;
}

/** The result of {@link listWorkspaces} and {@link listWorkspacesViaGateway}. */
export interface WorkspaceInventory {
  /** `offline` (state dir + disk) or `gateway` (asked a running gateway). */
  readonly source: "offline" | "gateway";
  readonly root: string;
  /** Whether a ledger was read (offline: false when the state dir has no database yet). */
  readonly ledger: boolean;
  readonly rows: WorkspaceRow[];
  /** Rows per state (after the orphans filter). */
  readonly counts: Record<WorkspaceState, number>;
}

/** Options shared by both listings. */
export interface InventoryOptions {
  /** Only `orphaned` and `unknown` rows. Default false. */
  orphansOnly?: boolean | undefined;
  /** Released rows shown (the newest); ignored with orphansOnly. Default 50. */
  releasedLimit?: number | undefined;
  /** The clock, for ages. Default `Date.now`. */
  now?: (() => number) | undefined;
}

const OPEN_STATES: LeaseState[] = ["acquiring", "live", "releasing", "failed"];

/** A directory found in the ephemeral root, as the sweep classified it. */
interface RootEntry {
  path: string;
  kind: "lease" | "trash" | "unknown";
  action: "reclaim" | "keep" | "report";
  reason: string;
  sessionKey: string | null;
  instanceId: string | null;
  createdAt: number | null;
}

interface MergeInput {
  openLeases: readonly LeaseRecord[];
  releasedLeases: readonly LeaseRecord[];
  entries: readonly RootEntry[];
  isAlive(instanceId: string): Promise<boolean>;
  /** Keys of sessions with an active run; undefined when unknown (offline: every live row stays `live`). */
  activeSessions: ReadonlySet<string> | undefined;
  orphansOnly: boolean;
  now: number;
}

type Draft = Omit<WorkspaceRow, "ageMs" | "sizeBytes">;

async function exists(target: string): Promise<boolean> {
  return lstat(target).then(
    () => true,
    () => false,
  );
}

/** The one merge of ledger rows and root entries into rows (shared by both sources). */
async function merge(input: MergeInput): Promise<WorkspaceRow[]> {
  const byPath = new Map(input.entries.map((entry) => [entry.path, entry]));
  const seen = new Set<string>();
  const drafts: Draft[] = [];
  const live = (lease: LeaseRecord, reason: string): Draft => {
    const idle = input.activeSessions !== undefined && !input.activeSessions.has(lease.sessionKey);
    const ledger = lease.state === "live" || lease.state === "acquiring" ? "" : ` (ledger: ${lease.state})`;
    return { ...fromLease(lease), state: idle ? "idle" : "live", reason: `${reason}${idle ? "; no active run" : ""}${ledger}` };
  };

  for (const lease of input.openLeases) {
    if (lease.path === null) continue;
    const entry = byPath.get(lease.path);
    if (entry !== undefined) seen.add(entry.path);
    if (lease.kind !== "ephemeral") {
      const alive = lease.instanceId !== null && (await input.isAlive(lease.instanceId));
      drafts.push(alive ? live(lease, `${lease.mode} workspace of a running gateway`) : { ...fromLease(lease), state: "released", reason: `${lease.mode} workspace, kept; its gateway is gone` });
      continue;
    }
    if (entry !== undefined) {
      if (entry.action === "keep") drafts.push(live(lease, entry.reason));
      else drafts.push({ ...fromLease(lease), state: entry.action === "reclaim" ? "orphaned" : "unknown", reason: entry.reason });
      continue;
    }
    const alive = lease.instanceId !== null && (await input.isAlive(lease.instanceId));
    const present = await exists(lease.path);
    if (alive) drafts.push(live(lease, present ? "owner instance is alive" : `directory not present (lease ${lease.state})`));
    else drafts.push({ ...fromLease(lease), state: "orphaned", reason: present ? "owner instance is dead" : "directory gone; a dead instance left its ledger row open (gc closes it)" });
  }

  for (const entry of input.entries) {
    if (seen.has(entry.path)) continue;
    const base = { path: entry.path, sessionKey: entry.sessionKey, leaseId: null, instanceId: entry.instanceId, createdAt: entry.createdAt };
    if (entry.kind === "trash") drafts.push({ ...base, mode: "trash", state: "orphaned", reason: entry.reason });
    else if (entry.kind === "unknown") drafts.push({ ...base, mode: "-", state: "unknown", reason: entry.reason });
    else if (entry.action === "keep") drafts.push({ ...base, mode: "ephemeral", state: "live", reason: `${entry.reason}; not in this ledger` });
    else drafts.push({ ...base, mode: "ephemeral", state: entry.action === "reclaim" ? "orphaned" : "unknown", reason: entry.reason });
  }

  if (!input.orphansOnly) {
    for (const lease of input.releasedLeases) {
      drafts.push({ ...fromLease(lease), state: "released", reason: `released (${lease.releaseReason ?? "?"}: ${lease.outcome ?? "?"})` });
    }
  }

  const shown = input.orphansOnly ? drafts.filter((draft) => draft.state === "orphaned" || draft.state === "unknown") : drafts;
  const rows = await mapLimit(shown, 8, async (draft): Promise<WorkspaceRow> => {
    const measurable = draft.path !== null && draft.state !== "released";
    const createdAt = draft.createdAt ?? (draft.path === null ? null : await createdAtOf(draft.path));
    return {
      ...draft,
      createdAt,
      ageMs: createdAt === null ? null : Math.max(0, input.now - createdAt),
      sizeBytes: measurable ? await directorySize(draft.path as string) : null,
    };
  });
  const order = (row: WorkspaceRow): number => WORKSPACE_STATES.indexOf(row.state);
  return rows.sort((a, b) => order(a) - order(b) || (b.createdAt ?? 0) - (a.createdAt ?? 0) || String(a.path).localeCompare(String(b.path)));
}

function fromLease(lease: LeaseRecord): Omit<Draft, "state" | "reason"> {
  return { path: lease.path, mode: lease.mode, sessionKey: lease.sessionKey, leaseId: lease.leaseId, instanceId: lease.instanceId, createdAt: lease.createdAt };
}

function countStates(rows: readonly WorkspaceRow[]): Record<WorkspaceState, number> {
  const counts = Object.fromEntries(WORKSPACE_STATES.map((state) => [state, 0])) as Record<WorkspaceState, number>;
  for (const row of rows) counts[row.state] += 1;
  return counts;
}

/**
 * Lists workspaces without a running gateway: the ledger in `<stateDir>/ocgw.sqlite` (when there
 * is one) and the ephemeral root, classified by a dry-run sweep (marker + owner liveness). Nothing
 * is created or deleted. Offline, no run can be seen, so no row is `idle`.
 *
 * @throws GatewayError CONFIG_* when the configuration does not load; WorkspaceError
 *   `WS_ROOT_UNSAFE` when the ephemeral root is a symlink, foreign or open to others.
 */
export async function listWorkspaces(options: OfflineOptions & InventoryOptions = {}): Promise<WorkspaceInventory> {
  const target = await loadOfflineTarget(options);
  const now = (options.now ?? Date.now)();
  const orphansOnly = options.orphansOnly ?? false;
  const store = openExistingStore(target.storePath);
  let openLeases: LeaseRecord[] = [];
  let releasedLeases: LeaseRecord[] = [];
  try {
    if (store !== undefined) {
      openLeases = store.listLeases({ states: OPEN_STATES });
      releasedLeases = orphansOnly ? [] : store.listLeases({ states: ["released"], limit: options.releasedLimit ?? 50 });
    }
  } finally {
    store?.close();
  }
  const result = await retryWhileBusy(() => sweep({ root: target.root, dryRun: true, staleMs: target.staleMs }));
  const entries: RootEntry[] = result.entries.map((entry) => ({
    path: entry.path,
    kind: entry.kind,
    action: entry.action,
    reason: entry.reason,
    sessionKey: entry.key ?? null,
    instanceId: entry.instanceId ?? null,
    createdAt: entry.createdAt ?? null,
  }));
  const isAlive = memoizeLiveness(createLivenessProbe({ root: target.root, staleMs: target.staleMs }));
  const rows = await merge({ openLeases, releasedLeases, entries, isAlive, activeSessions: undefined, orphansOnly, now });
  return { source: "offline", root: target.root, ledger: store !== undefined, rows, counts: countStates(rows) };
}

interface WorkspacesListPayload {
  root: string;
  instanceId: string;
  leases: LeaseRecord[];
}

/**
 * Lists workspaces through a running gateway: `workspaces.list` for the ledger, `sessions.list`
 * for which sessions have an active run (live vs idle), and `workspaces.gc {dryRun: true}` for what
 * is in the ephemeral root (needs an operator.admin connection). Sizes and ages are measured on
 * this machine when the paths are visible here.
 */
export async function listWorkspacesViaGateway(client: GatewayClient, options: InventoryOptions = {}): Promise<WorkspaceInventory> {
  const now = (options.now ?? Date.now)();
  const orphansOnly = options.orphansOnly ?? false;
  const open = await client.call<WorkspacesListPayload>("workspaces.list", { states: OPEN_STATES, limit: 10_000 });
  const released = orphansOnly ? undefined : await client.call<WorkspacesListPayload>("workspaces.list", { states: ["released"], limit: options.releasedLimit ?? 50 });
  const gc = await retryWhileBusy(
    () => client.call<GcSummary>("workspaces.gc", { dryRun: true }),
    (error) => {
      const remote = remoteErrorOf(error);
      return remote !== undefined && remoteErrorCode(remote) === "WS_GC_BUSY";
    },
  );
  const sessions = await listAllSessions(client);
  const activeSessions = new Set(sessions.filter((session) => session.hasActiveRun === true).map((session) => session.key));
  const entries: RootEntry[] = gc.entries.map((entry) => ({
    path: entry.path,
    kind: entry.kind,
    action: entry.action,
    reason: entry.reason,
    sessionKey: entry.sessionKey,
    instanceId: entry.instanceId,
    createdAt: null,
  }));
  const aliveIds = new Set([open.instanceId, ...gc.entries.filter((entry) => entry.action === "keep" && entry.instanceId !== null).map((entry) => entry.instanceId as string)]);
  const rows = await merge({
    openLeases: open.leases,
    releasedLeases: released?.leases ?? [],
    entries,
    isAlive: async (id) => aliveIds.has(id),
    activeSessions,
    orphansOnly,
    now,
  });
  return { source: "gateway", root: path.resolve(open.root), ledger: true, rows, counts: countStates(rows) };
}
