import type { LegacyEntry } from "@ocgw/gateway/legacy";
import type { CompatGuard } from "./compat.ts";
import type { PluginLogger } from "./host.ts";
import type { ReclaimOutcome } from "./reclaim.ts";

/**
 * The plugin's log lines, through OpenClaw's plugin logger: one per directory removed (or, in a
 * dry run, that would be), one per directory kept for a reason an operator should see (said once
 * per directory and reason, not every pass), and a summary per pass.
 */

/** Kept for a reason worth a line; `live-session` and `agent-workspace` are the normal case. */
const TOLD_KEEPS = new Set(["user-files", "not-plain", "unreadable", "unmapped", "idle-sandbox"]);

/** Counts of one pass, as its summary line states them. */
export interface PassSummary {
  readonly checked: number;
  readonly removed: number;
  readonly removedBytes: number;
  readonly planned: number;
  readonly kept: number;
  readonly failed: number;
}

function describe(entry: LegacyEntry): string {
  return `${entry.path} (${entry.code}: ${entry.reason}; ${entry.sizeBytes} B)`;
}

export interface ReportOptions {
  readonly logger: PluginLogger;
  readonly guard: CompatGuard;
  /** `sweep`, or `session_end deleted agent:main:x`. */
  readonly label: string;
  /** Why nothing was removed, when it did not act: `dry run`, `deletions disabled`. */
  readonly planOnly?: string | undefined;
  /** Keys (`path code`) already told. */
  readonly told: Set<string>;
}

function tellOnce(options: ReportOptions, key: string, line: string, level: "info" | "warn" = "info"): void {
  if (options.told.has(key)) return;
  options.told.add(key);
  options.logger[level](line);
}

export function reportOutcome(outcome: ReclaimOutcome, options: ReportOptions): PassSummary {
  const { scan, removal } = outcome;
  const { logger, label } = options;
  for (const warning of scan.warnings) tellOnce(options, `warning ${warning}`, `ocgw-reclaim: ${warning}`, "warn");
  for (const entry of scan.kept) {
    if (entry.code === "store-unreadable") options.guard.problem(`OpenClaw's session store is not in the format this plugin knows, so no sandbox directory is provably orphaned and none is removed: ${entry.reason}`);
    else if (TOLD_KEEPS.has(entry.code)) tellOnce(options, `${entry.path} ${entry.code}`, `ocgw-reclaim: kept ${describe(entry)} [${label}]`);
  }
  if (options.planOnly !== undefined) for (const entry of scan.candidates) logger.info(`ocgw-reclaim: would remove ${describe(entry)} [${label}; ${options.planOnly}]`);
  for (const entry of removal?.removed ?? []) logger.info(`ocgw-reclaim: removed ${describe(entry)} [${label}]`);
  for (const skip of removal?.skipped ?? []) logger.info(`ocgw-reclaim: left ${skip.path}: ${skip.reason} [${label}]`);
  for (const failure of removal?.failed ?? []) logger.warn(`ocgw-reclaim: could not remove ${failure.path}: ${failure.reason} [${label}]`);
  const summary: PassSummary = {
    checked: scan.candidates.length + scan.kept.length,
    removed: removal?.removed.length ?? 0,
    removedBytes: removal?.removedBytes ?? 0,
    planned: options.planOnly === undefined ? 0 : scan.candidates.length,
    kept: scan.kept.length,
    failed: removal?.failed.length ?? 0,
  };
  logger.info(`ocgw-reclaim: ${label}: ${summary.checked} checked, ${summary.removed} removed (${summary.removedBytes} B), ${summary.planned} planned only, ${summary.kept} kept, ${summary.failed} failed in ${Math.round(outcome.elapsedMs)} ms`);
  return summary;
}
