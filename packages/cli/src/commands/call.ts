import { GatewayError, connectGateway, remoteErrorCode, remoteErrorOf, resolveGatewayTarget } from "@ocgw/gateway";
import { type Command, Option } from "commander";
import { EXIT, type CommandContext, UsageError } from "../io.ts";
import { formatJson } from "../format.ts";
import { connectionOptions, timeoutOption } from "../options.ts";
import { exitCodeOf } from "../errors.ts";

interface CallOptions {
  params?: string;
  url?: string;
  token?: string;
  json?: boolean;
  timeout: number;
  expectFinal?: boolean;
}

/** Every operator scope: `call` is the operator's raw access to any method. */
const CALL_SCOPES = ["operator.read", "operator.write", "operator.admin"];

function parseParams(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--params is not valid JSON (${error instanceof Error ? error.message : String(error)}); pass an object such as '{"probe":true}'`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError(`--params must be a JSON object such as '{"probe":true}', not ${Array.isArray(value) ? "an array" : value === null ? "null" : typeof value}`);
  }
  return value as Record<string, unknown>;
}

/** `ocgw call <method>`: one RPC, its payload printed as JSON. */
export function registerCall(program: Command, ctx: CommandContext): void {
  const command = program
    .command("call")
    .description("call one gateway RPC method and print its payload as JSON")
    .argument("<method>", "method name, e.g. health, sessions.list, workspaces.gc")
    .addOption(new Option("--params <json>", "params as a JSON object"));
  for (const option of connectionOptions()) command.addOption(option);
  command
    .addOption(new Option("--json", "compact JSON; errors as {\"ok\":false,\"error\":{...}} on stdout"))
    .addOption(timeoutOption(10_000, "how long to wait for the answer (and the connection)"))
    .addOption(new Option("--expect-final", "treat a {status:\"accepted\"} reply as interim and wait for the final one (agent)"))
    .action(async (method: string, options: CallOptions) => {
      const { io } = ctx;
      const params = parseParams(options.params);
      const json = options.json === true;
      try {
        const target = await resolveGatewayTarget({ url: options.url, token: options.token, env: io.env, cwd: io.cwd });
        const client = await connectGateway({ url: target.url, token: target.token, scopes: CALL_SCOPES, timeoutMs: options.timeout });
        try {
          const payload = await client.call(method, params, { expectFinal: options.expectFinal === true, timeoutMs: options.timeout });
          io.stdout.write(formatJson(payload ?? null, json));
        } finally {
          await client.close();
        }
      } catch (error) {
        const remote = remoteErrorOf(error);
        if (json) {
          const shown = remote ?? (error instanceof GatewayError ? { code: error.code, message: error.message, ...(error.details === undefined ? {} : { details: error.details }) } : { code: "ERROR", message: error instanceof Error ? error.message : String(error) });
          io.stdout.write(formatJson({ ok: false, error: shown }, true));
          ctx.setExitCode(exitCodeOf(error));
          return;
        }
        if (remote !== undefined) {
          io.stderr.write(`error: ${remoteErrorCode(remote)}: ${remote.message}\n`);
          ctx.setExitCode(EXIT.failed);
          return;
        }
        throw error;
      }
    });
}
