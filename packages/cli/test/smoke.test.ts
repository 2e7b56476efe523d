/**
 * The one end-to-end test of the real bin: `node packages/cli/src/bin.ts gateway run` in a child
 * process, driven by in-process `run` calls, stopped with SIGINT.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs/promises";
import * as net from "node:net";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import type { WorkspaceInventory } from "@ocgw/gateway";
import { CLI_VERSION } from "../src/version.ts";
import { BIN, REPO_ROOT, SOURCE_CONDITION, leaseDirs, runCli, spawnGateway, tempDir } from "./helpers.ts";

/** A port that was free a moment ago (the gateway binds it next; the CLI must find it with no --url). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("the ocgw bin", () => {
  it("gateway run → ready line → call/chat/workspaces ls → SIGINT → exit 0 with every workspace released", async () => {
    const t = await tempDir();
    const port = await freePort();
    // As a newcomer runs it: no token anywhere; the gateway generates one, the CLI finds it.
    const env: NodeJS.ProcessEnv = { ...t.env, OCGW_PORT: String(port) };
    const gateway = await spawnGateway(["--state-dir", t.stateDir, "--config", t.config], env);
    expect(gateway.url).toBe(`ws://127.0.0.1:${port}`);
    const tokenFile = path.join(t.stateDir, "gateway.token");
    expect(gateway.stdout()).toBe(`ocgw gateway ready on ${gateway.url} (auth: token in ${tokenFile}; workspace.implicit=ephemeral)\n`);
    expect((await fs.stat(tokenFile)).mode & 0o777).toBe(0o600);
    const token = (await fs.readFile(tokenFile, "utf8")).trim();
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(`${gateway.stdout()}${gateway.stderr()}`).not.toContain(token);

    const health = await runCli(["call", "health"], { env });
    expect(health.code).toBe(0);
    expect(JSON.parse(health.stdout)).toMatchObject({ ok: true });
    // Auth is on: without the token (another state dir has none) the gateway refuses.
    const refused = await runCli(["call", "health"], { env: { ...env, OCGW_STATE_DIR: path.join(t.dir, "elsewhere") } });
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain("gateway token missing");

    const chat = await runCli(["chat", "hello"], { env });
    expect(chat.code).toBe(0);
    expect(chat.stdout).toBe("Echo: hello\n");

    const ls = await runCli(["workspaces", "ls", "--url", gateway.url], { env });
    expect(ls.code).toBe(0);
    const [dir] = await leaseDirs(t.root);
    expect(dir).toBeDefined();
    expect(ls.stdout).toContain(`${t.root}/${dir}`);
    expect(ls.stdout).toMatch(/\s+ephemeral\s+agent:main:cli-[0-9a-f-]{36}\s+idle\s+/);
    const json = JSON.parse((await runCli(["workspaces", "ls", "--json", "--url", gateway.url], { env })).stdout) as WorkspaceInventory;
    expect(json.rows.map((row) => row.state)).toEqual(["idle"]);

    gateway.child.kill("SIGINT");
    expect(await gateway.exited).toBe(0);
    expect(gateway.stderr()).toContain("SIGINT: releasing workspaces and stopping");
    expect(await leaseDirs(t.root)).toEqual([]);
    expect(await fs.readdir(t.root)).toEqual([".instances"]);
  });

  it("answers --version when TMPDIR names a missing directory (no module reads the temp dir at load)", async () => {
    const t = await tempDir();
    const missing = path.join(t.dir, "no-such-tmp");
    const result = spawnSync(process.execPath, [SOURCE_CONDITION, BIN, "--version"], { cwd: REPO_ROOT, encoding: "utf8", env: { ...t.env, TMPDIR: missing } });
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe(`${CLI_VERSION}\n`);
    expect(result.status).toBe(0);
  });
});
