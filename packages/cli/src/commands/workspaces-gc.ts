import {
  type GcSummary,
  type LegacyRemoval,
  type LegacyScan,
  collectWorkspaces,
  collectWorkspacesViaGateway,
  connectGateway,
  removeLegacyOrphans,
  resolveGatewayTarget,
  scanLegacyState,
} from "@ocgw/gateway";
import { type Command, Option } from "commander";
import { EXIT, type CommandContext } from "../io.ts";
import { formatAge, formatBytes, formatJson, renderTable } from "../format.ts";
import { gatewayUrl, offlineOptions } from "../options.ts";
import { createProgress } from "../progress.ts";
import { WORKSPACE_SCOPES } from "./workspaces-ls.ts";

interface WorkspacesGcOptions {
  dryRun?: boolean;
  legacy?: string;
  yes?: boolean;
  json?: boolean;
  stateDir?: string;
  config?: string;
  url?: string;
  token?: string;
}

/** Groups entries by reason: `3 × owner instance is alive`. */
function byReason(entries: readonly { reason: string }[]): string[] {
  const counts = new Map<string, number>();
  for (const entry of entries) counts.set(entry.reason, (counts.get(entry.reason) ?? 0) + 1);
  return [...counts].map(([reason, count]) => `${count} × ${reason}`);
}

function printGcSummary(ctx: CommandContext, summary: GcSummary): void {
  const { io } = ctx;
  const reclaim = summary.entries.filter((entry) => entry.action === "reclaim");
  const done = reclaim.filter((entry) => entry.outcome === "removed" || entry.outcome === "gone" || entry.outcome === "planned");
  const failed = reclaim.filter((entry) => !done.includes(entry));
  const kept = summary.entries.filter((entry) => entry.action === "keep");
  const reported = summary.entries.filter((entry) => entry.action === "report");
  io.stdout.write(`Ephemeral root ${summary.root}${summary.dryRun ? " (dry run: nothing removed)" : ""}\n`);
  io.stdout.write(`${summary.dryRun ? "would reclaim" : "reclaimed"} ${summary.reclaimed}${summary.dryRun ? "" : `, ledger rows closed ${summary.ledgerReconciled}`}\n`);
  for (const entry of done) io.stdout.write(`  ${entry.path}  ${entry.reason}${entry.sessionKey === null ? "" : ` (session ${entry.sessionKey})`}\n`);
  io.stdout.write(`skipped ${kept.length + reported.length}: kept ${kept.length} (alive), reported ${reported.length} (not provably ours, never deleted)\n`);
  for (const line of byReason(kept)) io.stdout.write(`  kept ${line}\n`);
  for (const entry of reported) io.stdout.write(`  reported ${entry.path}: ${entry.reason}\n`);
  if (failed.length > 0) {
    io.stdout.write(`failed ${failed.length}:\n`);
    for (const entry of failed) io.stdout.write(`  ${entry.path}: ${entry.outcome ?? "failed"}${entry.error === null ? "" : `: ${entry.error}`}\n`);
  }
  if (summary.dryRun && summary.reclaimed > 0) io.stdout.write("Run again without --dry-run to reclaim them.\n");
}

function printLegacyScan(ctx: CommandContext, scan: LegacyScan): void {
  const { io } = ctx;
  io.stdout.write(`OpenClaw state directory ${scan.dir}${scan.configPath === null ? " (no openclaw.json)" : ""}\n`);
  io.stdout.write(`Protected agent workspaces:\n`);
  for (const agent of scan.agents) io.stdout.write(`  ${agent.id}${agent.isDefault ? " (default)" : ""}  ${agent.workspace}\n`);
  if (scan.candidates.length === 0) io.stdout.write("No orphaned workspace directories.\n");
  else {
    io.stdout.write(`${scan.candidates.length} orphaned workspace ${scan.candidates.length === 1 ? "directory" : "directories"} (${formatBytes(scan.totalBytes)}):\n`);
    io.stdout.write(renderTable(["PATH", "SIZE", "AGE"], scan.candidates.map((candidate) => [candidate.path, formatBytes(candidate.sizeBytes), formatAge(candidate.ageMs)])));
  }
  if (scan.skipped.length > 0) {
    io.stdout.write(`Left alone (${scan.skipped.length}):\n`);
    for (const skip of scan.skipped) io.stdout.write(`  ${skip.path}: ${skip.reason}\n`);
  }
}

function printLegacyRemoval(ctx: CommandContext, scan: LegacyScan, removal: LegacyRemoval): void {
  const { io } = ctx;
  const skipped = [...scan.skipped, ...removal.skipped];
  io.stdout.write(`removed ${removal.removed.length} (${formatBytes(removal.removedBytes)}), skipped ${skipped.length}${removal.failed.length > 0 ? `, failed ${removal.failed.length}` : ""}\n`);
  for (const line of byReason(skipped)) io.stdout.write(`  skipped ${line}\n`);
  for (const failure of removal.failed) io.stdout.write(`  failed ${failure.path}: ${failure.reason}\n`);
}

async function legacy(ctx: CommandContext, dir: string, options: WorkspacesGcOptions): Promise<void> {
  const { io } = ctx;
  const scan = await scanLegacyState({ dir, env: io.env, cwd: io.cwd });
  const remove = options.yes === true && options.dryRun !== true;
  if (options.json !== true) printLegacyScan(ctx, scan);
  if (!remove) {
    if (options.json === true) io.stdout.write(formatJson({ dir: scan.dir, dryRun: true, agents: scan.agents, candidates: scan.candidates, skipped: scan.skipped, totalBytes: scan.totalBytes }, true));
    else if (scan.candidates.length > 0) io.stdout.write(`Nothing removed. To remove these ${scan.candidates.length} directories (${formatBytes(scan.totalBytes)}), run: ocgw workspaces gc --legacy ${JSON.stringify(scan.dir)} --yes\n`);
    return;
  }
  const progress = createProgress(io.stderr);
  let removal: LegacyRemoval;
  try {
    removal = await removeLegacyOrphans(scan, { onProgress: (done, total) => progress.update(done, total, "remove") });
  } finally {
    progress.stop();
  }
  if (options.json === true) {
    io.stdout.write(
      formatJson(
        { dir: scan.dir, dryRun: false, agents: scan.agents, candidates: scan.candidates, skipped: [...scan.skipped, ...removal.skipped], removed: removal.removed, removedBytes: removal.removedBytes, failed: removal.failed },
        true,
      ),
    );
  } else printLegacyRemoval(ctx, scan, removal);
  if (removal.failed.length > 0) ctx.setExitCode(EXIT.failed);
}

/** `ocgw workspaces gc`. */
export function registerWorkspacesGc(workspaces: Command, ctx: CommandContext): void {
  const command = workspaces
    .command("gc")
    .description("reclaim orphaned ephemeral workspaces, or with --legacy those an OpenClaw state dir accumulated")
    .addOption(new Option("--dry-run", "decide and report, remove nothing"))
    .addOption(new Option("--legacy <dir>", "scan an OpenClaw state directory (e.g. ~/.openclaw) for orphaned workspace-* directories").conflicts("url"))
    .addOption(new Option("--yes", "with --legacy: remove what the scan listed (without it nothing is removed)"))
    .addOption(new Option("--json", "print the result as JSON"));
  for (const option of offlineOptions()) command.addOption(option.conflicts("url"));
  command
    .addOption(new Option("--url <url>", "collect through a running gateway (workspaces.gc, admin scope)").argParser(gatewayUrl))
    .addOption(new Option("--token <token>", "gateway auth token (with --url; default $OCGW_GATEWAY_TOKEN)"))
    .action(async (options: WorkspacesGcOptions) => {
      const { io } = ctx;
      if (options.legacy !== undefined) {
        await legacy(ctx, options.legacy, options);
        return;
      }
      let summary: GcSummary;
      if (options.url !== undefined) {
        const target = await resolveGatewayTarget({ url: options.url, token: options.token, env: io.env, cwd: io.cwd });
        const client = await connectGateway({ url: target.url, token: target.token, scopes: WORKSPACE_SCOPES });
        try {
          summary = await collectWorkspacesViaGateway(client, { dryRun: options.dryRun === true });
        } finally {
          await client.close();
        }
      } else {
        const progress = createProgress(io.stderr);
        try {
          summary = await collectWorkspaces({
            stateDir: options.stateDir,
            configPath: options.config,
            env: io.env,
            cwd: io.cwd,
            dryRun: options.dryRun === true,
            onProgress: (event) => progress.update(event.done, event.total, event.phase),
          });
        } finally {
          progress.stop();
        }
      }
      if (options.json === true) io.stdout.write(formatJson(summary, true));
      else printGcSummary(ctx, summary);
      if (summary.failed > 0) ctx.setExitCode(EXIT.failed);
    });
}
