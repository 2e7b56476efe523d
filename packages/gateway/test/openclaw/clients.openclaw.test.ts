/**
 * The official `openclaw` CLI (the pinned npm package) against an ocgw gateway started with its
 * embedded defaults: auth on, token generated into the state dir. With that token it works
 * unchanged; with a wrong one it is refused.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { startGateway } from "../../src/index.ts";
import { OPENCLAW_PACKAGE } from "./install.ts";
import { openClawRoot } from "./openclaw-harness.ts";

interface Called {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `openclaw gateway call <method> --json …` as a child process (never spawnSync: the gateway runs in this process). */
function openclawCall(env: NodeJS.ProcessEnv, args: readonly string[]): Promise<Called> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(OPENCLAW_PACKAGE, "openclaw.mjs"), "gateway", "call", ...args, "--json"], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("the official openclaw 2026.9.6 CLI against ocgw with its embedded defaults", () => {
  it("calls health and sessions.list with the generated token, and is refused with a wrong one", async () => {
    const oc = await openClawRoot();
    const stateDir = path.join(oc.root, "ocgw-state");
    const gateway = await startGateway({ stateDir, gateway: { port: 0 }, workspace: { ephemeral: { root: path.join(oc.root, "ephemeral") }, gc: { intervalMs: 0 } } });
    onTestFinished(() => gateway.close("test finished"));
    const token = (await fs.readFile(path.join(stateDir, "gateway.token"), "utf8")).trim();

    const health = await openclawCall(oc.env, ["health", "--url", gateway.url, "--token", token]);
    expect(health.code, health.stderr).toBe(0);
    expect(JSON.parse(health.stdout)).toMatchObject({ ok: true, defaultAgentId: "main" });
    const sessions = await openclawCall(oc.env, ["sessions.list", "--url", gateway.url, "--token", token, "--params", "{}"]);
    expect(sessions.code, sessions.stderr).toBe(0);
    expect(JSON.parse(sessions.stdout)).toMatchObject({ count: 0, sessions: [] });

    const wrong = await openclawCall(oc.env, ["health", "--url", gateway.url, "--token", `${token}-wrong`]);
    expect(wrong.code).not.toBe(0);
    expect(`${wrong.stdout}${wrong.stderr}`).toContain("gateway token mismatch");
  });
});
