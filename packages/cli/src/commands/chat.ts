import { randomUUID } from "node:crypto";
import { connectGateway, resolveGatewayTarget, sendChat } from "@ocgw/gateway";
import { type Command, Option } from "commander";
import { EXIT, type CommandContext } from "../io.ts";
import { connectionOptions, timeoutOption } from "../options.ts";

interface ChatOptions {
  session?: string;
  workspace: boolean;
  url?: string;
  token?: string;
  timeout: number;
}

/** `ocgw chat <message>`: one turn, the reply streamed to stdout. */
export function registerChat(program: Command, ctx: CommandContext): void {
  const command = program
    .command("chat")
    .description("send one message (chat.send) and stream the reply to stdout")
    .argument("<message>", "the message")
    .addOption(new Option("--session <key>", "session key (default: a fresh implicit session, cli-<uuid>)"))
    .addOption(new Option("--no-workspace", "run without a workspace (chat.send workspace:false)"));
  for (const option of connectionOptions()) command.addOption(option);
  command.addOption(timeoutOption(10 * 60_000, "how long to wait for the reply to end (then the run is aborted)")).action(async (message: string, options: ChatOptions) => {
    const { io } = ctx;
    const target = await resolveGatewayTarget({ url: options.url, token: options.token, env: io.env, cwd: io.cwd });
    const client = await connectGateway({ url: target.url, token: target.token, scopes: ["operator.read", "operator.write"], timeoutMs: Math.min(options.timeout, 10_000) });
    const sessionKey = options.session ?? `cli-${randomUUID()}`;
    let printed = false;
    try {
      const outcome = await sendChat(client, {
        sessionKey,
        message,
        workspace: options.workspace,
        timeoutMs: options.timeout,
        onDelta: (text) => {
          printed = true;
          io.stdout.write(text);
        },
      });
      if (printed || outcome.state === "final") io.stdout.write("\n");
      if (options.session === undefined) io.stderr.write(`(session ${outcome.sessionKey})\n`);
      if (outcome.state === "error") {
        io.stderr.write(`ocgw: the run failed: ${outcome.errorMessage ?? "unknown error"}\n`);
        ctx.setExitCode(EXIT.failed);
      } else if (outcome.state === "aborted") {
        io.stderr.write("ocgw: the run was aborted before it finished\n");
        ctx.setExitCode(EXIT.failed);
      }
    } catch (error) {
      if (printed) io.stdout.write("\n");
      throw error;
    } finally {
      await client.close();
    }
  });
}
