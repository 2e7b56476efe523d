import { lstat } from "node:fs/promises";
import * as path from "node:path";
import { nodeFsPort, safeRemove } from "@ocgw/workspace";
import type { LegacyContext } from "./context.ts";
import { type LegacyEntry, decideEntry } from "./decide.ts";
import { LEGACY_TRASH_TAG, type LegacyScan, type LegacyScanOptions, legacyContext } from "./scan.ts";

/** Something the plan listed that removal left alone, with why. */
export interface LegacySkip {
  readonly path: string;
  readonly reason: string;
}

/** The result of {@link removeLegacyOrphans}. */
export interface LegacyRemoval {
  readonly removed: readonly LegacyEntry[];
  readonly removedBytes: number;
  /** Candidates that no longer passed every check at the moment of removal (changed, gone, now owned). */
  readonly skipped: readonly LegacySkip[];
  /** Candidates that could not be removed (permissions, I/O); a `.trash-ocgw-legacy-*` entry may remain. */
  readonly failed: readonly LegacySkip[];
}

export interface RemovalOptions extends Pick<LegacyScanOptions, "env" | "cwd" | "homedir" | "lockDir" | "now"> {
  onProgress?: ((done: number, total: number, candidate: LegacyEntry) => void) | undefined;
}

type Outcome = { kind: "removed" } | { kind: "skipped" | "failed"; reason: string };

/** Re-decides one candidate now, then removes it only if it is still the same orphan. */
async function removeOne(ctx: LegacyContext, scan: LegacyScan, candidate: LegacyEntry): Promise<Outcome> {
  const parent = path.dirname(candidate.path);
  const expected = scan.parents[parent];
  const parentNow = await lstat(parent, { bigint: true }).catch(() => undefined);
  if (expected === undefined || parentNow === undefined || !parentNow.isDirectory() || parentNow.dev.toString() !== expected.dev || parentNow.ino.toString() !== expected.ino) {
    return { kind: "skipped", reason: `refused: ${parent} is not the directory that was scanned` };
  }
  const now = await decideEntry(ctx, candidate, scan.rules);
  if (now.identity === null && now.code === "unreadable" && now.reason.includes("ENOENT")) return { kind: "skipped", reason: "already gone" };
  if (now.action !== "remove") return { kind: "skipped", reason: `refused: ${now.reason}` };
  if (candidate.identity === null || now.identity?.dev !== candidate.identity.dev || now.identity.ino !== candidate.identity.ino) {
    return { kind: "skipped", reason: "refused: it is not the directory that was scanned (device or inode changed)" };
  }
  const result = await safeRemove({ fs: nodeFsPort, root: parent, target: candidate.path, identity: candidate.identity, trashTag: LEGACY_TRASH_TAG });
  switch (result.outcome) {
    case "removed":
      return { kind: "removed" };
    case "gone":
      return { kind: "skipped", reason: "already gone" };
    case "refused":
      return { kind: "skipped", reason: `refused: ${result.error.message}` };
    default:
      return { kind: "failed", reason: result.error.message };
  }
}

/**
 * Carries out a plan: reads OpenClaw's state afresh (and refuses, as the scan did, while a gateway
 * runs on it unless the plan was forced), then for each candidate, at the moment it removes it,
 * decides it again under the same rules — still orphaned, still only seeds, still old enough, the
 * same device and inode, its parent the scanned one — and removes it with @ocgw/workspace's
 * `safeRemove` (rename to `.trash-ocgw-legacy-*` in the same parent, identity checked again, delete
 * without following links). Never throws for one entry's trouble.
 */
export async function removeLegacyOrphans(scan: LegacyScan, options: RemovalOptions = {}): Promise<LegacyRemoval> {
  const { onProgress, ...host } = options;
  const ctx = await legacyContext({ ...host, dir: scan.dir, idleDays: scan.rules.idleDays ?? undefined, force: scan.rules.force }, { real: scan.dir, aliases: scan.dirAliases });
  const removed: LegacyEntry[] = [];
  const skipped: LegacySkip[] = [];
  const failed: LegacySkip[] = [];
  let done = 0;
  for (const candidate of scan.candidates) {
    const outcome = await removeOne(ctx, scan, candidate);
    if (outcome.kind === "removed") removed.push(candidate);
    else (outcome.kind === "skipped" ? skipped : failed).push({ path: candidate.path, reason: outcome.reason });
    onProgress?.(++done, scan.candidates.length, candidate);
  }
  return { removed, removedBytes: removed.reduce((sum, entry) => sum + entry.sizeBytes, 0), skipped, failed };
}
