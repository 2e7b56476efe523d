import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { resolveGatewayTarget } from "../../src/client/target.ts";

const PORT = 4321;
const LOCAL = `ws://127.0.0.1:${PORT}`;

let dir: string;
let home: string;
let stateDir: string;
let config: string;
/** HOME, OCGW_STATE_DIR and OCGW_CONFIG inside the test's temp dir: the real ~/.ocgw is never read. */
let env: NodeJS.ProcessEnv;

beforeEach(async () => {
  dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "ocgw-target-")));
  home = path.join(dir, "home");
  stateDir = path.join(dir, "state");
  config = path.join(dir, "ocgw.json");
  await fs.mkdir(home);
  await fs.mkdir(stateDir);
  env = { HOME: home, OCGW_STATE_DIR: stateDir, OCGW_CONFIG: config };
  await writeConfig({});
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function writeConfig(auth: Record<string, unknown>): Promise<void> {
  await fs.writeFile(config, JSON.stringify({ gateway: { port: PORT, auth } }));
}

async function writeTokenFile(token: string, mode = 0o600, inDir = stateDir): Promise<void> {
  const file = path.join(inDir, "gateway.token");
  await fs.writeFile(file, `${token}\n`, { mode });
  await fs.chmod(file, mode);
}

describe("resolveGatewayTarget: the local gateway", () => {
  it("without --url is ws://127.0.0.1:<config port> and finds the token file in the state dir", async () => {
    await writeTokenFile("file-token");
    expect(await resolveGatewayTarget({ env })).toEqual({ url: LOCAL, token: "file-token" });
  });

  it("takes --token, else OCGW_GATEWAY_TOKEN, else the config's token, else the token file", async () => {
    await writeTokenFile("file-token");
    await writeConfig({ token: "config-token" });
    expect(await resolveGatewayTarget({ env })).toEqual({ url: LOCAL, token: "config-token" });
    expect(await resolveGatewayTarget({ env: { ...env, OCGW_GATEWAY_TOKEN: "" } })).toEqual({ url: LOCAL, token: "config-token" });
    expect(await resolveGatewayTarget({ env: { ...env, OCGW_GATEWAY_TOKEN: "env-token" } })).toEqual({ url: LOCAL, token: "env-token" });
    expect(await resolveGatewayTarget({ token: "flag", env: { ...env, OCGW_GATEWAY_TOKEN: "env-token" } })).toEqual({ url: LOCAL, token: "flag" });
  });

  it("counts a --url of ws: on a loopback host with the config's port as local", async () => {
    await writeTokenFile("file-token");
    for (const url of [`ws://localhost:${PORT}`, `ws://127.0.0.1:${PORT}`, `ws://127.0.0.2:${PORT}/`, `ws://[::1]:${PORT}`]) {
      expect(await resolveGatewayTarget({ url, env })).toEqual({ url, token: "file-token" });
    }
    const url = `ws://localhost:${PORT}`;
    expect(await resolveGatewayTarget({ url, env: { ...env, OCGW_GATEWAY_TOKEN: "env-token" } })).toEqual({ url, token: "env-token" });
  });

  it('does not read the token file when gateway.auth.mode is "none"', async () => {
    await writeConfig({ mode: "none" });
    await writeTokenFile("file-token");
    expect(await resolveGatewayTarget({ env })).toEqual({ url: LOCAL, token: undefined });
    await fs.chmod(path.join(stateDir, "gateway.token"), 0o644); // reading it now would reject
    expect(await resolveGatewayTarget({ env })).toEqual({ url: LOCAL, token: undefined });
  });

  it("rejects with AUTH_TOKEN_FILE for a token file others can read", async () => {
    await writeTokenFile("file-token", 0o644);
    await expect(resolveGatewayTarget({ env })).rejects.toMatchObject({ code: "AUTH_TOKEN_FILE" });
    await expect(resolveGatewayTarget({ url: `ws://localhost:${PORT}`, env })).rejects.toMatchObject({ code: "AUTH_TOKEN_FILE" });
  });

  it("has no token when there is no file and nothing is configured", async () => {
    expect(await resolveGatewayTarget({ env })).toEqual({ url: LOCAL, token: undefined });
  });

  it("with a config that cannot be loaded: port 18789 and the token file of the default state dir under HOME", async () => {
    await fs.writeFile(config, "{ not json5");
    await fs.mkdir(path.join(home, ".ocgw"));
    await writeTokenFile("home-token", 0o600, path.join(home, ".ocgw"));
    const { OCGW_STATE_DIR: _unused, ...withoutStateDir } = env;
    expect(await resolveGatewayTarget({ env: withoutStateDir })).toEqual({ url: "ws://127.0.0.1:18789", token: "home-token" });
    await writeTokenFile("state-token");
    expect(await resolveGatewayTarget({ env })).toEqual({ url: "ws://127.0.0.1:18789", token: "state-token" });
  });
});

describe("resolveGatewayTarget: another gateway", () => {
  const others = [`ws://example.com:${PORT}`, `ws://10.0.0.1:${PORT}`, `ws://127.0.0.1:${PORT + 1}`, `ws://localhost:${PORT + 1}`, "ws://127.0.0.1", `wss://127.0.0.1:${PORT}`, `wss://localhost:${PORT}`];

  it("gets no token even with OCGW_GATEWAY_TOKEN, a config token and a token file present", async () => {
    await writeTokenFile("file-token");
    await writeConfig({ token: "config-token" });
    for (const url of others) {
      expect(await resolveGatewayTarget({ url, env: { ...env, OCGW_GATEWAY_TOKEN: "env-token" } })).toEqual({ url, token: undefined });
      expect(await resolveGatewayTarget({ url, env })).toEqual({ url, token: undefined });
    }
  });

  it("never reads the token file (not even an insecure one)", async () => {
    await writeTokenFile("file-token", 0o644);
    for (const url of others) expect(await resolveGatewayTarget({ url, env })).toEqual({ url, token: undefined });
  });

  it("gets exactly --token when given", async () => {
    await writeTokenFile("file-token");
    await writeConfig({ token: "config-token" });
    const url = "ws://gateway.example.com:18789";
    expect(await resolveGatewayTarget({ url, token: "explicit-one", env: { ...env, OCGW_GATEWAY_TOKEN: "env-token" } })).toEqual({ url, token: "explicit-one" });
  });
});
