import { type GcSummary, collectWorkspaces, collectWorkspacesViaGateway, connectGateway, resolveGatewayTarget } from "@ocgw/gateway";
import { type Command, Option } from "commander";
import { EXIT, type CommandContext, UsageError } from "../io.ts";
import { formatJson } from "../format.ts";
import { gatewayUrl, offlineOptions } from "../options.ts";
import { createProgress } from "../progress.ts";
import { parseIdleDays, parseMinAge, runLegacyGc } from "./workspaces-gc-legacy.ts";
import { WORKSPACE_SCOPES } from "./workspaces-ls.ts";

interface WorkspacesGcOptions {
  dryRun?: boolean;
  legacy?: string | true;
  yes?: boolean;
  minAge?: number;
  idleDays?: number;
  force?: boolean;
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

/** `ocgw workspaces gc`. */
export function registerWorkspacesGc(workspaces: Command, ctx: CommandContext): void {
  const command = workspaces
    .command("gc")
    .description("reclaim orphaned ephemeral workspaces, or with --legacy those an OpenClaw state dir accumulated")
    .addOption(new Option("--dry-run", "decide and report, remove nothing"))
    .addOption(new Option("--legacy [dir]", "reclaim what OpenClaw leaked in its state directory (default $OPENCLAW_STATE_DIR or ~/.openclaw): a dry run unless --yes").conflicts("url"))
    .addOption(new Option("--yes", "with --legacy: remove exactly what the dry run lists, each checked again first"))
    .addOption(new Option("--min-age <duration>", "with --legacy: keep anything changed more recently (default 1h; 30m, 2d, 0)").argParser(parseMinAge))
    .addOption(new Option("--idle-days <n>", "with --legacy: also reclaim sandbox workspaces of sessions idle more than n days (OpenClaw recreates one if its session speaks again)").argParser(parseIdleDays))
    .addOption(new Option("--force", "with --legacy: act even though an OpenClaw gateway is running on the state directory"))
    .addOption(new Option("--json", "print the result as JSON"));
  for (const option of offlineOptions()) command.addOption(option.conflicts("url"));
  command
    .addOption(new Option("--url <url>", "collect through a running gateway (workspaces.gc, admin scope)").argParser(gatewayUrl))
    .addOption(new Option("--token <token>", "gateway auth token (default for the local gateway: $OCGW_GATEWAY_TOKEN, the config's gateway.auth.token, else <stateDir>/gateway.token; a --url of another gateway gets only this)"))
    .action(async (options: WorkspacesGcOptions) => {
      const { io } = ctx;
      if (options.legacy !== undefined) {
        await runLegacyGc(ctx, { ...options, legacy: options.legacy });
        return;
      }
      const legacyOnly = (["yes", "minAge", "idleDays", "force"] as const).filter((key) => options[key] !== undefined);
      if (legacyOnly.length > 0) throw new UsageError(`${legacyOnly.map((key) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(", ")} only apply with --legacy; the ocgw collector needs none of them`);
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
