import { runDoctor } from "@ocgw/gateway";
import { type Command, Option } from "commander";
import { EXIT, type CommandContext } from "../io.ts";
import { formatJson } from "../format.ts";
import { offlineOptions } from "../options.ts";

interface DoctorOptions {
  stateDir?: string;
  config?: string;
  json?: boolean;
}

/** `ocgw doctor`. */
export function registerDoctor(program: Command, ctx: CommandContext): void {
  const command = program.command("doctor").description("check the config, state dir, ephemeral root, free space, store and orphans");
  for (const option of offlineOptions()) command.addOption(option);
  command.addOption(new Option("--json", "print {ok, checks} as JSON")).action(async (options: DoctorOptions) => {
    const { io } = ctx;
    const report = await runDoctor({ stateDir: options.stateDir, configPath: options.config, env: io.env, cwd: io.cwd });
    if (options.json === true) io.stdout.write(formatJson(report, true));
    else {
      const width = Math.max(...report.checks.map((check) => check.check.length));
      for (const check of report.checks) io.stdout.write(`${check.status.padEnd(4)}  ${check.check.padEnd(width)}  ${check.detail}\n`);
    }
    ctx.setExitCode(report.ok ? EXIT.ok : EXIT.failed);
  });
}
