import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { CONFIG_DEFAULTS, configSchema, isLoopbackBind, resolveConfig } from "../../src/config/index.ts";
import { caught, issuesOf, useTempDir } from "./helpers.ts";

const tmp = useTempDir();
const at = () => ({ cwd: path.join(tmp(), "cwd"), homedir: path.join(tmp(), "home") });

describe("defaults", () => {
  it("are valid on their own and deep-frozen: mutating throws", () => {
    const config = resolveConfig({}, at());
    expect(config.gateway.port).toBe(18_789);
    expect(config.gateway.bind).toBe("loopback");
    expect(config.workspace.implicit).toBe("ephemeral");
    expect(config.workspace.ephemeral.idleTtlMs).toBe(900_000);
    expect(config.gateway.maxPayloadBytes).toBe(26_214_400);
    expect(config.runner.kind).toBe("echo");
    expect(config.stateDir).toBe(path.join(at().homedir, ".ocgw"));
    expect(config.configPath).toBeNull();

    expect(Object.isFrozen(config)).toBe(true);
    expect(() => {
      config.gateway.port = 1;
    }).toThrow(TypeError);
    expect(() => {
      config.runner.command.argv.push("sh");
    }).toThrow(TypeError);
    expect(() => {
      (config.agentIds as string[]).push("x");
    }).toThrow(TypeError);
    expect(() => {
      (CONFIG_DEFAULTS.gateway as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(config.gateway.port).toBe(18_789);
  });

  it("equal what the schema outputs for {} (the schema reads them from CONFIG_DEFAULTS)", () => {
    expect(configSchema.parse({})).toStrictEqual(JSON.parse(JSON.stringify(CONFIG_DEFAULTS)));
  });

  it("an undefined input means all defaults, and the input object is neither kept nor changed", () => {
    expect(resolveConfig(undefined, at()).gateway.port).toBe(18_789);
    const input = { gateway: { port: 1234 }, runner: { command: { argv: ["x"] } } };
    const config = resolveConfig(input, at());
    expect(config.runner.command.argv).not.toBe(input.runner.command.argv);
    expect(Object.isFrozen(input.gateway)).toBe(false);
    expect(input).toStrictEqual({ gateway: { port: 1234 }, runner: { command: { argv: ["x"] } } });
  });

  it("every key has a description that states its default", () => {
    const missing: string[] = [];
    const walk = (schema: z.ZodType, at: string): void => {
      if (schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault || schema instanceof z.ZodOptional) {
        walk(schema.unwrap() as z.ZodType, at);
      } else if (schema instanceof z.ZodObject) {
        for (const [key, child] of Object.entries(schema.shape as Record<string, z.ZodType>)) {
          const where = at === "" ? key : `${at}.${key}`;
          if (!(child instanceof z.ZodObject || child.def.type === "prefault") && !/Default: /.test(child.description ?? "")) missing.push(where);
          if (child.description === undefined) missing.push(where);
          walk(child, where);
        }
      } else if (schema instanceof z.ZodRecord) {
        walk(schema.valueType as z.ZodType, `${at}.<id>`);
      }
    };
    walk(configSchema, "");
    expect(missing).toStrictEqual([]);
    const described = configSchema.shape.workspace.unwrap().shape.ephemeral.unwrap().shape.idleTtlMs.description;
    expect(described).toMatch(/Milliseconds.*Default: 900000 \(15 min\)/);
    const jsonSchema = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" });
    expect(JSON.stringify(jsonSchema)).toContain("Default: 18789");
  });
});

describe("paths", () => {
  it('expands "~" to the home directory and resolves relative paths against cwd', () => {
    const { cwd, homedir } = at();
    const config = resolveConfig(
      {
        stateDir: "~",
        agents: { defaults: { workspace: "~/ws" }, entries: { main: { workspace: "agents/main" }, ops: { workspace: "/abs/ops" } } },
        workspace: { ephemeral: { root: "~/eph" } },
      },
      { cwd, homedir },
    );
    expect(config.stateDir).toBe(homedir);
    expect(config.agents.defaults.workspace).toBe(path.join(homedir, "ws"));
    expect(config.agents.entries["main"]?.workspace).toBe(path.join(cwd, "agents", "main"));
    expect(config.agents.entries["ops"]?.workspace).toBe(path.resolve("/abs/ops"));
    expect(config.workspace.ephemeral.root).toBe(path.join(homedir, "eph"));
  });

  it('does not expand "~" in the middle of a path or "~user"', () => {
    const { cwd, homedir } = at();
    const config = resolveConfig({ stateDir: "a/~/b", agents: { defaults: { workspace: "~user/x" } } }, { cwd, homedir });
    expect(config.stateDir).toBe(path.join(cwd, "a", "~", "b"));
    expect(config.agents.defaults.workspace).toBe(path.join(cwd, "~user", "x"));
  });
});

describe("validation", () => {
  it("reports every problem at once, each with its path and a fix", async () => {
    const error = await caught(() =>
      resolveConfig(
        {
          gateway: { port: 70_000, bind: "everywhere", tickIntervalMs: 1.5 },
          workspace: { implicit: "tmp", ephemeral: { staleMs: 10 } },
          runner: { kind: "shell" },
          session: { mainKey: "" },
        },
        at(),
      ),
    );
    const issues = issuesOf(error);
    expect(issues.map((issue) => issue.path).sort()).toStrictEqual(
      ["gateway.bind", "gateway.port", "gateway.tickIntervalMs", "runner.kind", "session.mainKey", "workspace.ephemeral.staleMs", "workspace.implicit"].sort(),
    );
    const implicit = issues.find((issue) => issue.path === "workspace.implicit");
    expect(implicit?.message).toBe('must be one of "ephemeral", "agent", "persistent", "none"; got "tmp"');
    expect(issues.find((issue) => issue.path === "gateway.port")?.message).toBe("must be an integer from 0 to 65535 (0 = any free port); got 70000");
    expect(issues.every((issue) => issue.source === "input")).toBe(true);
    for (const issue of issues) expect(error.message).toContain(`${issue.path}: ${issue.message}`);
    expect(error.message).toMatch(/^The configuration is invalid, 7 problems:\n/);
  });

  it("rejects unknown keys at every level, each with its path and a hint", async () => {
    const error = await caught(() =>
      resolveConfig({ extra: true, gateway: { prot: 1 }, agents: { entries: { main: { nmae: "x" } } }, runner: { openai: { apikey: "k" } } }, at()),
    );
    const byPath = new Map(issuesOf(error).map((issue) => [issue.path, issue.message]));
    expect([...byPath.keys()].sort()).toStrictEqual(["agents.entries.main.nmae", "extra", "gateway.prot", "runner.openai.apikey"]);
    expect(byPath.get("gateway.prot")).toBe('is not a known key: did you mean "port"? Otherwise remove it');
    expect(byPath.get("agents.entries.main.nmae")).toContain('did you mean "name"');
    expect(byPath.get("runner.openai.apikey")).toContain('did you mean "apiKey"');
    expect(byPath.get("extra")).toContain("keys allowed here: stateDir, gateway, agents, session, workspace, runner");
  });

  it("rejects a document that is not an object", async () => {
    for (const input of [null, 42, ["a"], "x"]) {
      const issues = issuesOf(await caught(() => resolveConfig(input, at())));
      expect(issues).toHaveLength(1);
      expect(issues[0]?.path).toBe("(top level)");
      expect(issues[0]?.message).toMatch(/^must be an object/);
    }
  });

  it("rejects malformed agent ids with their path", async () => {
    const error = await caught(() => resolveConfig({ agents: { entries: { Main: {}, "bad id": {} }, default: "-x" } }, at()));
    const paths = issuesOf(error).map((issue) => issue.path);
    expect(paths).toContain("agents.entries.Main");
    expect(paths).toContain('agents.entries["bad id"]');
    expect(paths).toContain("agents.default");
    expect(issuesOf(error)[0]?.message).toMatch(/must be an agent id/);
  });

  it("never echoes secrets back", async () => {
    const error = await caught(() => resolveConfig({ gateway: { auth: { token: 987_654_321 } }, runner: { openai: { apiKey: 123_456_789 } } }, at()));
    expect(issuesOf(error).map((issue) => issue.path)).toStrictEqual(["gateway.auth.token", "runner.openai.apiKey"]);
    expect(error.message).not.toContain("987654321");
    expect(error.message).not.toContain("123456789");
  });
});

describe("cross-field rules", () => {
  it('runner.kind "command" needs a non-empty argv', async () => {
    const issues = issuesOf(await caught(() => resolveConfig({ runner: { kind: "command" } }, at())));
    expect(issues).toHaveLength(1);
    expect(issues[0]?.path).toBe("runner.command.argv");
    expect(issues[0]?.message).toContain('when runner.kind is "command"');
    expect(resolveConfig({ runner: { kind: "command", command: { argv: ["my-agent", ""] } } }, at()).runner.command.argv).toStrictEqual(["my-agent", ""]);
    const empty = issuesOf(await caught(() => resolveConfig({ runner: { kind: "command", command: { argv: [""] } } }, at())));
    expect(empty.map((issue) => issue.path)).toStrictEqual(["runner.command.argv[0]"]);
  });

  it('runner.kind "openai" needs baseUrl (a URL) and model', async () => {
    const issues = issuesOf(await caught(() => resolveConfig({ runner: { kind: "openai" } }, at())));
    expect(issues.map((issue) => issue.path)).toStrictEqual(["runner.openai.baseUrl", "runner.openai.model"]);
    const notUrl = issuesOf(await caught(() => resolveConfig({ runner: { kind: "openai", openai: { baseUrl: "ftp://x", model: "m" } } }, at())));
    expect(notUrl.map((issue) => issue.path)).toStrictEqual(["runner.openai.baseUrl"]);
    expect(notUrl[0]?.message).toContain("must be an http or https URL");
    const ok = resolveConfig({ runner: { kind: "openai", openai: { baseUrl: "http://localhost:8000/v1", model: "m" } } }, at());
    expect(ok.runner.openai.baseUrl).toBe("http://localhost:8000/v1");
  });

  it("agents.default must name an entry, and at most one entry is default: true", async () => {
    const unknown = issuesOf(await caught(() => resolveConfig({ agents: { default: "ops", entries: { main: {}, dev: {} } } }, at())));
    expect(unknown.map((issue) => issue.path)).toStrictEqual(["agents.default"]);
    expect(unknown[0]?.message).toContain('use one of "main", "dev"');
    const implicitOnly = issuesOf(await caught(() => resolveConfig({ agents: { default: "ops" } }, at())));
    expect(implicitOnly.map((issue) => issue.path)).toStrictEqual(["agents.default"]);
    const twice = issuesOf(await caught(() => resolveConfig({ agents: { entries: { a: { default: true }, b: { default: true } } } }, at())));
    expect(twice.map((issue) => issue.path)).toStrictEqual(["agents.entries"]);
    expect(twice[0]?.message).toContain('"a", "b"');
    const ambiguous = issuesOf(await caught(() => resolveConfig({ agents: { entries: { a: {}, b: {} } } }, at())));
    expect(ambiguous.map((issue) => issue.path)).toStrictEqual(["agents.default"]);
  });

  it("are reported together with ordinary problems", async () => {
    const issues = issuesOf(await caught(() => resolveConfig({ gateway: { port: "x" }, runner: { kind: "command" } }, at())));
    expect(issues.map((issue) => issue.path)).toStrictEqual(["gateway.port", "runner.command.argv"]);
  });
});

describe("defaultAgentId", () => {
  it('is "main" with no entries, and agentIds is ["main"]', () => {
    const config = resolveConfig({}, at());
    expect(config.defaultAgentId).toBe("main");
    expect(config.agentIds).toStrictEqual(["main"]);
  });

  it("is the only entry when there is one", () => {
    const config = resolveConfig({ agents: { entries: { ops: { name: "Ops" } } } }, at());
    expect(config.defaultAgentId).toBe("ops");
    expect(config.agentIds).toStrictEqual(["ops"]);
  });

  it("is the entry with default: true", () => {
    expect(resolveConfig({ agents: { entries: { a: {}, b: { default: true }, main: {} } } }, at()).defaultAgentId).toBe("b");
  });

  it("is agents.default when set, over default: true", () => {
    const config = resolveConfig({ agents: { default: "c", entries: { a: {}, b: { default: true }, c: {} } } }, at());
    expect(config.defaultAgentId).toBe("c");
    expect(config.agentIds).toStrictEqual(["a", "b", "c"]);
  });

  it('is "main" among several entries when none is marked', () => {
    expect(resolveConfig({ agents: { entries: { dev: {}, main: {} } } }, at()).defaultAgentId).toBe("main");
  });
});

describe("bind", () => {
  it('INSECURE_BIND for lan with gateway.auth.mode "none"', async () => {
    const error = await caught(() => resolveConfig({ gateway: { bind: "lan", auth: { mode: "none" } } }, at()));
    expect(error.code).toBe("INSECURE_BIND");
    expect(error.message).toContain('gateway.bind is "lan" (listening on 0.0.0.0');
    expect(error.message).toContain('Set gateway.auth.mode to "token"');
  });

  it("no error for lan in token mode, with or without a configured token (a missing one is generated at start)", () => {
    const config = resolveConfig({ gateway: { bind: "lan", auth: { token: "s3cret" } } }, at());
    expect(config.gateway.auth).toMatchObject({ mode: "token", token: "s3cret" });
    expect(resolveConfig({ gateway: { bind: "lan" } }, at()).gateway.auth.mode).toBe("token");
  });

  it('CONFIG_INVALID for a token beside mode "none", which would never be asked for', async () => {
    const error = await caught(() => resolveConfig({ gateway: { auth: { mode: "none", token: "s3cret" } } }, at()));
    expect(error.code).toBe("CONFIG_INVALID");
    expect(error.message).toContain("gateway.auth.token");
  });

  it("treats 127.x, ::1 and mapped 127.x as loopback and other literals as exposed", async () => {
    for (const bind of ["127.0.0.1", "127.1.2.3", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"]) {
      expect(isLoopbackBind(bind)).toBe(true);
      expect(resolveConfig({ gateway: { bind } }, at()).gateway.bind).toBe(bind);
    }
    for (const bind of ["0.0.0.0", "::", "192.168.1.10", "fe80::1"]) {
      expect(isLoopbackBind(bind)).toBe(false);
      expect((await caught(() => resolveConfig({ gateway: { bind, auth: { mode: "none" } } }, at()))).code).toBe("INSECURE_BIND");
    }
  });
});
