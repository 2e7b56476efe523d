import { connectGateway, listAllSessions, resolveGatewayTarget } from "@ocgw/gateway";
import { type Command, Option } from "commander";
import type { CommandContext } from "../io.ts";
import { formatAge, formatJson, renderTable } from "../format.ts";
import { connectionOptions } from "../options.ts";

interface SessionsLsOptions {
  json?: boolean;
  url?: string;
  token?: string;
}

/** `ocgw sessions ls`. */
export function registerSessionsLs(sessions: Command, ctx: CommandContext): void {
  const command = sessions
    .command("ls")
    .description("list the sessions of a running gateway (sessions.list)")
    .addOption(new Option("--json", "print {\"sessions\":[...]} as JSON"));
  for (const option of connectionOptions()) command.addOption(option);
  command.action(async (options: SessionsLsOptions) => {
    const { io } = ctx;
    const target = await resolveGatewayTarget({ url: options.url, token: options.token, env: io.env, cwd: io.cwd });
    const client = await connectGateway({ url: target.url, token: target.token, scopes: ["operator.read"] });
    try {
      const rows = await listAllSessions(client);
      if (options.json === true) {
        io.stdout.write(formatJson({ sessions: rows }, true));
        return;
      }
      const now = Date.now();
      io.stdout.write(
        renderTable(
          ["KEY", "AGENT", "WORKSPACE", "STATUS", "UPDATED"],
          rows.map((row) => [row.key, row.agentId, row.workspaceMode, row.status, `${formatAge(now - row.updatedAt)} ago`]),
        ),
      );
      io.stdout.write(`${rows.length} session${rows.length === 1 ? "" : "s"}\n`);
    } finally {
      await client.close();
    }
  });
}
