import { type LegacyEntry, type LegacyRemoval, type LegacyScan, removeLegacyOrphans, scanLegacyState } from "@ocgw/gateway";
import ms from "ms";
import { type CommandContext, EXIT, UsageError } from "../io.ts";
import { formatAge, formatBytes, formatJson, renderTable } from "../format.ts";
import { createProgress } from "../progress.ts";

/** The flags of `ocgw workspaces gc --legacy`. */
export interface LegacyFlags {
  legacy: string | true;
  yes?: boolean;
  dryRun?: boolean;
  minAge?: number;
  idleDays?: number;
  force?: boolean;
  json?: boolean;
}

/** `--min-age 1h` / `90m` / `2d` / `0` → ms. */
export function parseMinAge(value: string): number {
  const parsed = /^\d+$/.test(value.trim()) ? Number(value) * 1000 : ms(value.trim() as ms.StringValue);
  if (typeof parsed !== "number" || !Number.isFinite(parsed) || parsed < 0) throw new UsageError(`--min-age must be a duration like 30m, 1h or 2d (a bare number is seconds), not "${value}"`);
  return parsed;
}

/** `--idle-days N`: a whole number of days, at least 1. */
export function parseIdleDays(value: string): number {
  const days = Number(value);
  if (!Number.isInteger(days) || days < 1) throw new UsageError(`--idle-days must be a whole number of days (1 or more), not "${value}"`);
  return days;
}

const REASONS: Readonly<Record<string, string>> = {
  "orphan-workspace": "agent workspace no configured agent resolves to",
  "orphan-sandbox": "sandbox workspace of a session that no longer exists",
  "idle-sandbox": "sandbox workspace of a session idle past --idle-days",
  "interrupted-removal": "left by an interrupted removal",
  "agent-workspace": "kept: a configured agent's workspace",
  "live-session": "kept: a session that still exists owns it",
  unmapped: "kept: its owner cannot be computed",
  "store-unreadable": "kept: a session store cannot be read",
  "user-files": "kept: holds files not written by OpenClaw",
  "too-young": "kept: changed within --min-age",
  "not-plain": "kept: a link, a mount, another user's, or too large to prove",
  unreadable: "kept: cannot be inspected",
};

function printHeader(ctx: CommandContext, scan: LegacyScan): void {
  const out = ctx.io.stdout;
  out.write(`OpenClaw state directory ${scan.dir}\n`);
  out.write(`Config ${scan.configPath}${scan.configFound ? "" : " (none: the implicit main agent)"}\n`);
  for (const evidence of scan.gatewayRunning) out.write(`WARNING: an OpenClaw gateway is running (${evidence}); going on because of --force\n`);
  for (const warning of scan.warnings) out.write(`warning: ${warning}\n`);
  out.write(`Agents (their workspaces are never removed):\n`);
  for (const agent of scan.agents) out.write(`  ${agent.id}${agent.isDefault ? " (default)" : ""}${agent.source === "agents-dir" ? " (not configured; has agents/" + agent.id + ")" : ""}  ${agent.workspace}\n`);
  out.write(`Sandbox roots: ${scan.sandboxRoots.join(", ")}\n`);
}

function printPlan(ctx: CommandContext, scan: LegacyScan, dryRun: boolean): void {
  const out = ctx.io.stdout;
  if (scan.candidates.length === 0) out.write("Nothing to remove.\n");
  else {
    out.write(`${dryRun ? "Would remove" : "Removing"} ${scan.candidates.length} ${scan.candidates.length === 1 ? "directory" : "directories"} (${formatBytes(scan.totalBytes)}):\n`);
    out.write(renderTable(["PATH", "WHY", "SIZE", "AGE"], scan.candidates.map((entry) => [entry.path, entry.code, formatBytes(entry.sizeBytes), formatAge(entry.ageMs)])));
  }
  if (scan.kept.length > 0) {
    out.write(`Kept ${scan.kept.length}:\n`);
    for (const entry of scan.kept) out.write(`  ${entry.path}: ${entry.reason}\n`);
  }
  out.write("Summary:\n");
  const order = Object.keys(REASONS);
  const rows = Object.entries(scan.byCode).sort(([a], [b]) => order.indexOf(a) - order.indexOf(b));
  out.write(renderTable(["WHY", "COUNT", "SIZE", "MEANING"], rows.map(([code, t]) => [code, String(t.count), formatBytes(t.bytes), REASONS[code] ?? code])));
}

function printRemoval(ctx: CommandContext, removal: LegacyRemoval): void {
  const out = ctx.io.stdout;
  out.write(`removed ${removal.removed.length} (${formatBytes(removal.removedBytes)}), skipped ${removal.skipped.length}, failed ${removal.failed.length}\n`);
  for (const skip of removal.skipped) out.write(`  skipped ${skip.path}: ${skip.reason}\n`);
  for (const failure of removal.failed) out.write(`  failed ${failure.path}: ${failure.reason}\n`);
}

function jsonOf(scan: LegacyScan, removal: LegacyRemoval | undefined): unknown {
  const strip = (entry: LegacyEntry): Omit<LegacyEntry, "identity"> => {
    const { identity: _identity, ...rest } = entry;
    return rest;
  };
  const { parents: _parents, ...plan } = scan;
  return { ...plan, candidates: scan.candidates.map(strip), kept: scan.kept.map(strip), dryRun: removal === undefined, ...(removal === undefined ? {} : { removed: removal.removed.map(strip), removedBytes: removal.removedBytes, skipped: removal.skipped, failed: removal.failed }) };
}

/** `ocgw workspaces gc --legacy [dir]`: the dry run by default; `--yes` removes exactly the plan's candidates, each re-verified. */
export async function runLegacyGc(ctx: CommandContext, flags: LegacyFlags): Promise<void> {
  const { io } = ctx;
  const remove = flags.yes === true && flags.dryRun !== true;
  const progress = createProgress(io.stderr);
  const options = { dir: flags.legacy === true ? undefined : flags.legacy, env: io.env, cwd: io.cwd, minAgeMs: flags.minAge, idleDays: flags.idleDays, force: flags.force === true };
  let scan: LegacyScan;
  try {
    scan = await scanLegacyState({ ...options, onProgress: (done, total) => progress.update(done, total, "scan") });
  } finally {
    progress.stop();
  }
  if (flags.json !== true) {
    printHeader(ctx, scan);
    printPlan(ctx, scan, !remove);
  }
  if (!remove) {
    if (flags.json === true) io.stdout.write(formatJson(jsonOf(scan, undefined), true));
    else if (scan.candidates.length > 0) io.stdout.write(`Dry run: nothing removed. To remove exactly these ${scan.candidates.length} (each checked again first), run: ocgw workspaces gc --legacy ${JSON.stringify(scan.dir)} --yes${flags.minAge === undefined ? "" : ` --min-age ${flags.minAge / 1000}`}${flags.idleDays === undefined ? "" : ` --idle-days ${flags.idleDays}`}${flags.force === true ? " --force" : ""}\n`);
    return;
  }
  let removal: LegacyRemoval;
  try {
    removal = await removeLegacyOrphans(scan, { env: io.env, cwd: io.cwd, onProgress: (done, total) => progress.update(done, total, "remove") });
  } finally {
    progress.stop();
  }
  if (flags.json === true) io.stdout.write(formatJson(jsonOf(scan, removal), true));
  else printRemoval(ctx, removal);
  if (removal.failed.length > 0) ctx.setExitCode(EXIT.failed);
}
