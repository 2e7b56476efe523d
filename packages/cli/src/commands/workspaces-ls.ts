import { type WorkspaceInventory, WORKSPACE_STATES, connectGateway, listWorkspaces, listWorkspacesViaGateway, resolveGatewayTarget } from "@ocgw/gateway";
import { type Command, Option } from "commander";
import type { CommandContext } from "../io.ts";
import { formatAge, formatBytes, formatJson, renderTable } from "../format.ts";
import { gatewayUrl, offlineOptions } from "../options.ts";

interface WorkspacesLsOptions {
  orphans?: boolean;
  json?: boolean;
  stateDir?: string;
  config?: string;
  url?: string;
  token?: string;
}

/** Scopes for asking a gateway about workspaces: orphans come from a dry-run `workspaces.gc` (admin). */
export const WORKSPACE_SCOPES = ["operator.read", "operator.admin"];

export function printInventory(ctx: CommandContext, inventory: WorkspaceInventory, json: boolean): void {
  const { io } = ctx;
  if (json) {
    io.stdout.write(formatJson(inventory, true));
    return;
  }
  if (inventory.rows.length > 0) {
    io.stdout.write(
      renderTable(
        ["PATH", "MODE", "SESSION", "STATE", "SIZE", "AGE"],
        inventory.rows.map((row) => [row.path ?? "-", row.mode, row.sessionKey ?? "-", row.state, formatBytes(row.sizeBytes), formatAge(row.ageMs)]),
      ),
    );
  }
  const counts = WORKSPACE_STATES.filter((state) => inventory.counts[state] > 0).map((state) => `${inventory.counts[state]} ${state}`);
  const source = inventory.source === "gateway" ? "from the gateway" : inventory.ledger ? "offline" : "offline, no ledger in the state dir";
  io.stdout.write(`${inventory.rows.length} workspace${inventory.rows.length === 1 ? "" : "s"}${counts.length > 0 ? ` (${counts.join(", ")})` : ""}; ephemeral root ${inventory.root} (${source})\n`);
  if (inventory.counts.orphaned > 0) io.stdout.write("Reclaim orphans with: ocgw workspaces gc\n");
}

/** `ocgw workspaces ls`. */
export function registerWorkspacesLs(workspaces: Command, ctx: CommandContext): void {
  const command = workspaces
    .command("ls")
    .description("list workspaces: live, idle, released (latest 50), orphaned, unknown")
    .addOption(new Option("--orphans", "only orphaned and unknown entries"))
    .addOption(new Option("--json", "print the inventory as JSON"));
  for (const option of offlineOptions()) command.addOption(option.conflicts("url"));
  command
    .addOption(new Option("--url <url>", "ask a running gateway instead of reading the state dir").argParser(gatewayUrl))
    .addOption(new Option("--token <token>", "gateway auth token (default for the local gateway: $OCGW_GATEWAY_TOKEN, the config's gateway.auth.token, else <stateDir>/gateway.token; a --url of another gateway gets only this)"))
    .action(async (options: WorkspacesLsOptions) => {
      const { io } = ctx;
      if (options.url !== undefined) {
        const target = await resolveGatewayTarget({ url: options.url, token: options.token, env: io.env, cwd: io.cwd });
        const client = await connectGateway({ url: target.url, token: target.token, scopes: WORKSPACE_SCOPES });
        try {
          printInventory(ctx, await listWorkspacesViaGateway(client, { orphansOnly: options.orphans === true }), options.json === true);
        } finally {
          await client.close();
        }
        return;
      }
      const inventory = await listWorkspaces({ stateDir: options.stateDir, configPath: options.config, env: io.env, cwd: io.cwd, orphansOnly: options.orphans === true });
      printInventory(ctx, inventory, options.json === true);
    });
}
