import { Command, CommanderError } from "commander";
import { registerCall } from "./commands/call.ts";
import { registerChat } from "./commands/chat.ts";
import { registerDoctor } from "./commands/doctor.ts";
import { registerGatewayRun } from "./commands/gateway-run.ts";
import { registerSessionsLs } from "./commands/sessions-ls.ts";
import { registerWorkspacesGc } from "./commands/workspaces-gc.ts";
import { registerWorkspacesLs } from "./commands/workspaces-ls.ts";
import { errorLine, exitCodeOf } from "./errors.ts";
import { type CommandContext, EXIT, type RunIO } from "./io.ts";
import { CLI_VERSION } from "./version.ts";

export { EXIT, UsageError, type RunIO, type Writer } from "./io.ts";

/** Commander's "not an error" exits: --help and --version. */
const CLEAN_EXITS = new Set(["commander.helpDisplayed", "commander.version"]);

function buildProgram(ctx: CommandContext): Command {
  const { io } = ctx;
  const program = new Command("ocgw")
    .description("Run the ocgw gateway, call it, and find and reclaim orphaned workspaces.")
    .version(CLI_VERSION, "-V, --version")
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: (text, write) => write(`ocgw: ${text.replace(/^error: /, "")}`),
    })
    .showSuggestionAfterError(true);

  const gateway = program.command("gateway").description("the gateway itself");
  registerGatewayRun(gateway, ctx);
  registerCall(program, ctx);
  registerChat(program, ctx);
  const sessions = program.command("sessions").description("sessions of a running gateway");
  registerSessionsLs(sessions, ctx);
  const workspaces = program.command("workspaces").description("workspace inventory and reclamation");
  registerWorkspacesLs(workspaces, ctx);
  registerWorkspacesGc(workspaces, ctx);
  registerDoctor(program, ctx);
  return program;
}

/**
 * Runs `ocgw` with the given arguments (without `node` and the script) and resolves with the exit
 * code: 0 ok, 1 failed / unhealthy / RPC error, 2 usage error, 3 gateway unreachable. Never throws
 * and never exits the process: output goes to `io.stdout`/`io.stderr`.
 */
export async function run(argv: readonly string[], overrides: Partial<RunIO> = {}): Promise<number> {
  const io: RunIO = {
    stdout: overrides.stdout ?? process.stdout,
    stderr: overrides.stderr ?? process.stderr,
    env: overrides.env ?? process.env,
    cwd: overrides.cwd ?? process.cwd(),
    signal: overrides.signal,
    exit: overrides.exit ?? ((code) => process.exit(code)),
  };
  let exitCode: number = EXIT.ok;
  const ctx: CommandContext = {
    io,
    setExitCode: (code) => {
      exitCode = code;
    },
  };
  const program = buildProgram(ctx);
  try {
    await program.parseAsync([...argv], { from: "user" });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return CLEAN_EXITS.has(error.code) ? EXIT.ok : EXIT.usage;
    io.stderr.write(errorLine(error));
    return exitCodeOf(error);
  }
}
