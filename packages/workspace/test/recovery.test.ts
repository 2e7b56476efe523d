import { lstat, rm, stat } from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import type { WorkspaceError } from "../src/errors.ts";
import { createLivenessProbe, registerInstance } from "../src/instance.ts";
import { resolveAgentWorkspaceDir } from "../src/paths.ts";
import { createEphemeralProvider } from "../src/providers/ephemeral.ts";
import { tempDir } from "./helpers.ts";

async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe("recovery from a vanished root or lock", () => {
  it("makes the ephemeral root again, with its checks, when something deleted it", async () => {
    const base = await tempDir();
    const root = path.join(base, "openclaw-test");
    const provider = await createEphemeralProvider({ root, liveness: { staleMs: 2000, heartbeatMs: 1000 } });
    onTestFinished(() => provider.close());
    const before = await provider.acquire({ key: "before" });
    await rm(root, { recursive: true, force: true }); // what an OS temp cleaner does

    const after = await provider.acquire({ key: "after" });
    expect(path.dirname(after.path as string)).toBe(root);
    expect((await lstat(root)).mode & 0o777).toBe(0o700);
    expect((await stat(after.path as string)).isDirectory()).toBe(true);
    // The lease whose directory went with the root releases as "gone", without an error.
    expect((await provider.release(before, "delete")).outcome).toBe("gone");
    expect((await provider.release(after, "delete")).outcome).toBe("removed");
  });

  it("takes a lost liveness lock again under the same id, so its leases stay alive", async () => {
    const root = path.join(await tempDir(), "openclaw-test");
    const provider = await createEphemeralProvider({ root });
    onTestFinished(() => provider.close());
    const lost: WorkspaceError[] = [];
    const instance = await registerInstance({ root, staleMs: 2000, heartbeatMs: 1000, onCompromised: (error) => lost.push(error) });
    onTestFinished(() => instance.close());
    const probe = createLivenessProbe({ root, staleMs: 2000 });
    expect(await probe.isAlive(instance.id)).toBe(true);

    await rm(path.join(root, ".instances", `${instance.id}.lock`), { recursive: true, force: true });
    expect(await probe.isAlive(instance.id)).toBe(false); // what a collector would see in the gap

    await until(async () => lost.length > 0 && (await probe.isAlive(instance.id)), "the lock to be taken again");
    expect(lost[0]?.code).toBe("WS_INSTANCE_LOCK_FAILED");
    expect(instance.id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("closing an instance stops any re-lock: it stays dead", async () => {
    const root = path.join(await tempDir(), "openclaw-test");
    const provider = await createEphemeralProvider({ root });
    onTestFinished(() => provider.close());
    const instance = await registerInstance({ root, staleMs: 2000, heartbeatMs: 1000 });
    await instance.close();
    const probe = createLivenessProbe({ root, staleMs: 2000 });
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(await probe.isAlive(instance.id)).toBe(false);
  });
});

describe("OPENCLAW_WORKSPACE_DIR, as upstream orders it", () => {
  const stateDir = "/state";
  it("is the default agent's workspace when agents.defaults.workspace is unset", () => {
    expect(resolveAgentWorkspaceDir("main", { stateDir, envWorkspace: "/env/ws" })).toBe("/env/ws");
  });
  it("loses to agents.defaults.workspace and to an explicit per-agent workspace", () => {
    expect(resolveAgentWorkspaceDir("main", { stateDir, envWorkspace: "/env/ws", defaultsWorkspace: "/defaults" })).toBe("/defaults");
    expect(resolveAgentWorkspaceDir("main", { stateDir, envWorkspace: "/env/ws", agentWorkspaces: { main: "/explicit" } })).toBe("/explicit");
  });
  it("does not become the root of other agents' workspaces", () => {
    expect(resolveAgentWorkspaceDir("ops", { stateDir, envWorkspace: "/env/ws" })).toBe("/state/workspace-ops");
  });
});
