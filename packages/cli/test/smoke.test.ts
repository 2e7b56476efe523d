/**
 * The one end-to-end test of the real bin: `node packages/cli/src/bin.ts gateway run` in a child
 * process, driven by in-process `run` calls, stopped with SIGINT.
 */
import * as fs from "node:fs/promises";
import { describe, expect, it } from "vitest";
import type { WorkspaceInventory } from "@ocgw/gateway";
import { leaseDirs, runCli, spawnGateway, tempDir } from "./helpers.ts";

describe("the ocgw bin", () => {
  it("gateway run → ready line → call/chat/workspaces ls → SIGINT → exit 0 with every workspace released", async () => {
    const t = await tempDir();
    const env: NodeJS.ProcessEnv = { PATH: process.env["PATH"], HOME: t.dir, OCGW_CONFIG: t.config, OCGW_STATE_DIR: t.stateDir };
    const gateway = await spawnGateway(["--port", "0", "--state-dir", t.stateDir, "--config", t.config], env);
    expect(gateway.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    expect(gateway.stdout()).toBe(`ocgw gateway ready on ${gateway.url} (workspace.implicit=ephemeral)\n`);

    const health = await runCli(["call", "health", "--url", gateway.url], { env: t.env });
    expect(health.code).toBe(0);
    expect(JSON.parse(health.stdout)).toMatchObject({ ok: true });

    const chat = await runCli(["chat", "hello", "--url", gateway.url], { env: t.env });
    expect(chat.code).toBe(0);
    expect(chat.stdout).toBe("Echo: hello\n");

    const ls = await runCli(["workspaces", "ls", "--url", gateway.url], { env: t.env });
    expect(ls.code).toBe(0);
    const [dir] = await leaseDirs(t.root);
    expect(dir).toBeDefined();
    expect(ls.stdout).toContain(`${t.root}/${dir}`);
    expect(ls.stdout).toMatch(/\s+ephemeral\s+agent:main:cli-[0-9a-f-]{36}\s+idle\s+/);
    const json = JSON.parse((await runCli(["workspaces", "ls", "--json", "--url", gateway.url], { env: t.env })).stdout) as WorkspaceInventory;
    expect(json.rows.map((row) => row.state)).toEqual(["idle"]);

    gateway.child.kill("SIGINT");
    expect(await gateway.exited).toBe(0);
    expect(gateway.stderr()).toContain("SIGINT: releasing workspaces and stopping");
    expect(await leaseDirs(t.root)).toEqual([]);
    expect(await fs.readdir(t.root)).toEqual([".instances"]);
  });
});
