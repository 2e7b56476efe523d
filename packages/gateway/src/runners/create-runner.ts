import { GatewayError } from "../errors.ts";
import { createCommandRunner } from "./command.ts";
import { createEchoRunner } from "./echo.ts";
import { createOpenAIRunner } from "./openai.ts";
import type { AgentRunner, RunnerSpec } from "./types.ts";

/**
 * The one resolver from a configured runner block to a runner. Specs usually come from a config
 * file, so they are checked at run time too: an unknown kind or missing settings (a command
 * without argv, openai without baseUrl or model) throw GatewayError("RUNNER_CONFIG").
 */
export function createRunner(spec: RunnerSpec): AgentRunner {
  const raw: unknown = spec;
  const kind = typeof raw === "object" && raw !== null ? (raw as { kind?: unknown }).kind : undefined;
  switch (kind) {
    case "echo":
      return createEchoRunner();
    case "command":
      return createCommandRunner(spec as Extract<RunnerSpec, { kind: "command" }>);
    case "openai":
      return createOpenAIRunner(spec as Extract<RunnerSpec, { kind: "openai" }>);
    default:
      throw new GatewayError("RUNNER_CONFIG", `Unknown runner kind ${JSON.stringify(kind) ?? "undefined"}; use "echo", "command" or "openai"`);
  }
}
