import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/index.ts";
import { caught, issuesOf, useTempDir, writeFile } from "./helpers.ts";

const tmp = useTempDir();
const home = () => path.join(tmp(), "home");
const cwd = () => path.join(tmp(), "cwd");

/** Writes the default config file, `<home>/.ocgw/ocgw.json`. */
function writeDefaultFile(text: string): string {
  return writeFile(home(), ".ocgw/ocgw.json", text);
}

describe("precedence: flags > env > file > defaults", () => {
  it("file values override the defaults", async () => {
    const file = writeDefaultFile(`{ gateway: { port: 4000, tickIntervalMs: 5000 }, workspace: { implicit: "none" } }`);
    const config = await loadConfig({ env: {}, homedir: home(), cwd: cwd() });
    expect(config.configPath).toBe(file);
    expect(config.gateway.port).toBe(4000);
    expect(config.gateway.tickIntervalMs).toBe(5000);
    expect(config.workspace.implicit).toBe("none");
    expect(config.gateway.handshakeTimeoutMs).toBe(15_000); // untouched keys keep their defaults
  });

  it("env overrides the file", async () => {
    writeDefaultFile(`{ stateDir: "/from/file", gateway: { port: 4000, auth: { token: "file-token" } }, runner: { openai: { model: "file-model" } } }`);
    const config = await loadConfig({
      env: { OCGW_PORT: "5000", OCGW_STATE_DIR: "~/from-env", OCGW_GATEWAY_TOKEN: "env-token", OCGW_OPENAI_MODEL: "env-model" },
      homedir: home(),
      cwd: cwd(),
    });
    expect(config.gateway.port).toBe(5000);
    expect(config.stateDir).toBe(path.join(home(), "from-env"));
    expect(config.gateway.auth.token).toBe("env-token");
    expect(config.runner.openai.model).toBe("env-model");
  });

  it("flags override env", async () => {
    writeDefaultFile(`{ gateway: { port: 4000 } }`);
    const config = await loadConfig({
      env: { OCGW_PORT: "5000", OCGW_STATE_DIR: "/from/env", OCGW_GATEWAY_TOKEN: "env-token" },
      flags: { port: 6000, stateDir: "state", token: "flag-token", bind: "lan" },
      homedir: home(),
      cwd: cwd(),
    });
    expect(config.gateway.port).toBe(6000);
    expect(config.stateDir).toBe(path.join(cwd(), "state"));
    expect(config.gateway.auth.token).toBe("flag-token");
    expect(config.gateway.bind).toBe("lan");
  });

  it("empty environment variables count as unset", async () => {
    writeDefaultFile(`{ gateway: { port: 4000 } }`);
    const config = await loadConfig({ env: { OCGW_PORT: "", OCGW_GATEWAY_TOKEN: "", OCGW_CONFIG: "" }, homedir: home(), cwd: cwd() });
    expect(config.gateway.port).toBe(4000);
    expect(config.gateway.auth.token).toBeUndefined();
  });

  it("fills the openai runner from OCGW_OPENAI_* and the variable named by apiKeyEnv", async () => {
    writeDefaultFile(`{ runner: { kind: "openai", openai: { apiKeyEnv: "MY_KEY" } } }`);
    const config = await loadConfig({
      env: { OCGW_OPENAI_BASE_URL: "https://llm.example/v1", OCGW_OPENAI_MODEL: "m1", MY_KEY: "sk-env", OPENAI_API_KEY: "not-this-one" },
      homedir: home(),
      cwd: cwd(),
    });
    expect(config.runner.openai).toStrictEqual({ baseUrl: "https://llm.example/v1", model: "m1", apiKey: "sk-env", apiKeyEnv: "MY_KEY" });
  });
});

describe("the config file", () => {
  it("a missing default file is fine: defaults, configPath null", async () => {
    const config = await loadConfig({ env: {}, homedir: home(), cwd: cwd() });
    expect(config.configPath).toBeNull();
    expect(config.gateway.port).toBe(18_789);
  });

  it("a missing explicit file is CONFIG_UNREADABLE, whether named by flag or by OCGW_CONFIG", async () => {
    const missing = path.join(tmp(), "nope.json");
    const byFlag = await caught(() => loadConfig({ flags: { configPath: missing }, env: {}, homedir: home(), cwd: cwd() }));
    expect(byFlag.code).toBe("CONFIG_UNREADABLE");
    expect(byFlag.message).toContain(`named by --config, ${missing}: it does not exist`);
    const byEnv = await caught(() => loadConfig({ env: { OCGW_CONFIG: missing }, homedir: home(), cwd: cwd() }));
    expect(byEnv.code).toBe("CONFIG_UNREADABLE");
    expect(byEnv.message).toContain("named by OCGW_CONFIG");
  });

  it("the flag beats OCGW_CONFIG, and a relative path resolves against cwd", async () => {
    writeFile(cwd(), "flag.json5", `{ gateway: { port: 1111 } }`);
    const envFile = writeFile(tmp(), "env.json5", `{ gateway: { port: 2222 } }`);
    const config = await loadConfig({ flags: { configPath: "flag.json5" }, env: { OCGW_CONFIG: envFile }, homedir: home(), cwd: cwd() });
    expect(config.configPath).toBe(path.join(cwd(), "flag.json5"));
    expect(config.gateway.port).toBe(1111);
    expect((await loadConfig({ env: { OCGW_CONFIG: envFile }, homedir: home(), cwd: cwd() })).gateway.port).toBe(2222);
  });

  it("a directory or an empty file is CONFIG_UNREADABLE", async () => {
    const dir = path.join(tmp(), "dir.json");
    fs.mkdirSync(dir);
    const isDir = await caught(() => loadConfig({ flags: { configPath: dir }, env: {}, homedir: home(), cwd: cwd() }));
    expect(isDir.code).toBe("CONFIG_UNREADABLE");
    expect(isDir.message).toContain("it is a directory");
    const empty = writeFile(tmp(), "empty.json", " \n");
    const isEmpty = await caught(() => loadConfig({ flags: { configPath: empty }, env: {}, homedir: home(), cwd: cwd() }));
    expect(isEmpty.code).toBe("CONFIG_UNREADABLE");
    expect(isEmpty.message).toContain("is empty");
  });

  it("accepts JSON5: comments, trailing commas, unquoted keys, single quotes", async () => {
    writeDefaultFile(`// ocgw config
{
  /* the listener */
  gateway: {
    port: 7000, // trailing comma next
    bind: '127.0.0.1',
  },
  agents: { entries: { ops: { name: "Ops", }, }, },
}
`);
    const config = await loadConfig({ env: {}, homedir: home(), cwd: cwd() });
    expect(config.gateway.port).toBe(7000);
    expect(config.gateway.bind).toBe("127.0.0.1");
    expect(config.defaultAgentId).toBe("ops");
  });

  it("a syntax error is CONFIG_UNREADABLE naming the file, line and column", async () => {
    const file = writeDefaultFile(`{\n  gateway: {\n    port: 7000\n    bind: "lan",\n  },\n}\n`);
    const error = await caught(() => loadConfig({ env: {}, homedir: home(), cwd: cwd() }));
    expect(error.code).toBe("CONFIG_UNREADABLE");
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/invalid character 'b' at line 4, column 5/);
    expect(error.details).toMatchObject({ path: file, line: 4, column: 5 });
  });

  it("an invalid file reports all its problems at once, each with its path and the file as source", async () => {
    const file = writeDefaultFile(`{
  gateway: { port: -1, bind: "everywhere" },
  workspace: { implicit: "tmp", gc: { intervalMs: "5m" } },
  runner: { kind: "command" },
  sesion: {},
}`);
    const error = await caught(() => loadConfig({ env: {}, homedir: home(), cwd: cwd() }));
    const issues = issuesOf(error);
    expect(issues.map((issue) => issue.path)).toStrictEqual([
      "gateway.port",
      "gateway.bind",
      "workspace.implicit",
      "workspace.gc.intervalMs",
      "sesion",
      "runner.command.argv",
    ]);
    expect(issues.every((issue) => issue.source === `file ${file}`)).toBe(true);
    expect(error.message).toContain(`The configuration (file ${file}) is invalid, 6 problems:`);
    expect(error.message).toContain('workspace.implicit: must be one of "ephemeral", "agent", "persistent", "none"; got "tmp"');
    expect(error.message).toContain('sesion: is not a known key: did you mean "session"?');
    expect(error.message).toContain('workspace.gc.intervalMs: must be an integer from 0 to 2147483647 (milliseconds; 0 = no periodic sweep); got "5m"');
    expect(error.details?.["configPath"]).toBe(file);
  });
});

describe("values from the environment and flags are validated with their source", () => {
  it("OCGW_PORT that is not an integer 0–65535 is CONFIG_INVALID at gateway.port, source env OCGW_PORT", async () => {
    for (const raw of ["abc", "70000", "-1", "80.5"]) {
      const error = await caught(() => loadConfig({ env: { OCGW_PORT: raw }, homedir: home(), cwd: cwd() }));
      expect(issuesOf(error)).toStrictEqual([
        { path: "gateway.port", message: `must be an integer from 0 to 65535 (0 = any free port); got ${JSON.stringify(raw)}`, source: "env OCGW_PORT" },
      ]);
      expect(error.message).toContain("gateway.port (from env OCGW_PORT): must be an integer from 0 to 65535");
    }
  });

  it("an env problem is listed with the file's problems", async () => {
    writeDefaultFile(`{ workspace: { implicit: "tmp" } }`);
    const error = await caught(() => loadConfig({ env: { OCGW_PORT: "http" }, homedir: home(), cwd: cwd() }));
    expect(issuesOf(error).map((issue) => [issue.path, issue.source.split(" ")[0]])).toStrictEqual([
      ["gateway.port", "env"],
      ["workspace.implicit", "file"],
    ]);
  });

  it("a flag that replaces a bad value hides it; a bad flag is reported as the flag", async () => {
    const config = await loadConfig({ env: { OCGW_PORT: "abc" }, flags: { port: 9000 }, homedir: home(), cwd: cwd() });
    expect(config.gateway.port).toBe(9000);
    const error = await caught(() => loadConfig({ env: {}, flags: { port: 1e6, bind: "nowhere" }, homedir: home(), cwd: cwd() }));
    expect(issuesOf(error).map((issue) => [issue.path, issue.source])).toStrictEqual([
      ["gateway.port", "flag --port"],
      ["gateway.bind", "flag --bind"],
    ]);
  });

  it("OCGW_OPENAI_BASE_URL must be a URL", async () => {
    const error = await caught(() => loadConfig({ env: { OCGW_OPENAI_BASE_URL: "not a url" }, homedir: home(), cwd: cwd() }));
    expect(issuesOf(error)).toMatchObject([{ path: "runner.openai.baseUrl", source: "env OCGW_OPENAI_BASE_URL" }]);
  });
});

describe("insecure binds at load time", () => {
  it('INSECURE_BIND for --bind lan with auth mode "none", naming the flag', async () => {
    writeDefaultFile(`{ gateway: { auth: { mode: "none" } } }`);
    const error = await caught(() => loadConfig({ env: {}, flags: { bind: "lan" }, homedir: home(), cwd: cwd() }));
    expect(error.code).toBe("INSECURE_BIND");
    expect(error.message).toContain("set by flag --bind");
  });

  it("no error for a lan bind in the file with the token from OCGW_GATEWAY_TOKEN", async () => {
    writeDefaultFile(`{ gateway: { bind: "lan" } }`);
    const config = await loadConfig({ env: { OCGW_GATEWAY_TOKEN: "t0ken" }, homedir: home(), cwd: cwd() });
    expect(config.gateway.bind).toBe("lan");
    expect(config.gateway.auth.token).toBe("t0ken");
    expect(Object.isFrozen(config.gateway.auth)).toBe(true);
  });
});
