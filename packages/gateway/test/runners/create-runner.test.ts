import { describe, expect, it } from "vitest";
import { GatewayError } from "../../src/errors.ts";
import { type RunnerSpec, createCommandRunner, createOpenAIRunner, createRunner } from "../../src/runners/index.ts";
import { makeInput } from "./helpers.ts";

function configError(make: () => unknown): GatewayError {
  try {
    make();
  } catch (error) {
    expect(error).toBeInstanceOf(GatewayError);
    return error as GatewayError;
  }
  throw new Error("expected a RUNNER_CONFIG error");
}

describe("createRunner", () => {
  it("builds each kind of runner", async () => {
    const echo = createRunner({ kind: "echo" });
    expect(echo.kind).toBe("echo");
    expect((await echo.run(makeInput({ message: "hi" }).input)).text).toBe("Echo: hi");
    const command = createRunner({ kind: "command", argv: ["sh", "-c", "cat"], env: { A: "b" }, killGraceMs: 0 });
    expect(command.kind).toBe("command");
    expect((await command.run(makeInput({ message: "piped" }).input)).text).toBe("piped");
    await command.close();
    const openai = createRunner({ kind: "openai", baseUrl: "http://127.0.0.1:9/v1", model: "m", apiKey: "k" });
    expect(openai.kind).toBe("openai");
    await openai.close();
  });

  const bad: [string, unknown][] = [
    ["command without argv", { kind: "command" }],
    ["command with empty argv", { kind: "command", argv: [] }],
    ["command with an empty program", { kind: "command", argv: [""] }],
    ["command with a non-string argument", { kind: "command", argv: ["sh", 1] }],
    ["command with a string argv", { kind: "command", argv: "claude -p" }],
    ["command with a non-string env value", { kind: "command", argv: ["sh"], env: { A: 1 } }],
    ["command with a negative killGraceMs", { kind: "command", argv: ["sh"], killGraceMs: -1 }],
    ["command with a non-numeric killGraceMs", { kind: "command", argv: ["sh"], killGraceMs: "2s" }],
    ["openai without baseUrl", { kind: "openai", model: "m" }],
    ["openai without model", { kind: "openai", baseUrl: "http://127.0.0.1:1/v1" }],
    ["openai with an empty model", { kind: "openai", baseUrl: "http://127.0.0.1:1/v1", model: " " }],
    ["openai with a relative baseUrl", { kind: "openai", baseUrl: "/v1", model: "m" }],
    ["openai with a non-http baseUrl", { kind: "openai", baseUrl: "ftp://example.com/v1", model: "m" }],
    ["openai with a non-string apiKey", { kind: "openai", baseUrl: "http://127.0.0.1:1/v1", model: "m", apiKey: 42 }],
    ["an unknown kind", { kind: "llama" }],
    ["no kind", {}],
    ["null", null],
    ["a string", "echo"],
  ];

  it.each(bad)("rejects %s with RUNNER_CONFIG", (_name, spec) => {
    const error = configError(() => createRunner(spec as RunnerSpec));
    expect(error.code).toBe("RUNNER_CONFIG");
  });

  it("names the unknown kind and the missing settings", () => {
    expect(configError(() => createRunner({ kind: "llama" } as unknown as RunnerSpec)).message).toContain('"llama"');
    expect(configError(() => createRunner({ kind: "command" } as unknown as RunnerSpec)).message).toContain("argv");
    expect(configError(() => createRunner({ kind: "openai", model: "m" } as unknown as RunnerSpec)).message).toContain("baseUrl");
    expect(configError(() => createRunner({ kind: "openai", baseUrl: "http://x/v1" } as unknown as RunnerSpec)).message).toContain("model");
  });

  it("the factories validate on their own too", () => {
    expect(configError(() => createCommandRunner({ argv: [] })).code).toBe("RUNNER_CONFIG");
    expect(configError(() => createOpenAIRunner({ baseUrl: "not a url", model: "m" })).code).toBe("RUNNER_CONFIG");
  });
});
