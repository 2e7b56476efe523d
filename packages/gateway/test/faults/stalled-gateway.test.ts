/**
 * Fault suite: a gateway that is alive but silent (SIGSTOP, as a suspended laptop or a long
 * event-loop block would leave it) for longer than `staleMs`. Regression: a stalled live gateway
 * was judged dead, and an offline `ocgw workspaces gc` or another gateway on the same root deleted
 * its live workspaces. Its process is provably alive (same host, boot, pid namespace, pid and
 * start time), so its stale heartbeat is not death.
 */
import { lstat, readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { collectWorkspaces } from "../../src/index.ts";
import { withTimeout } from "../protocol/helpers.ts";
import { chatSend, chatTurn, connectAdmin, gatewayConfig, leaseEntries, makeDirs, spawnGatewayChild, startTestGateway, waitForTerminals, waitUntil } from "../gateway/lifecycle-harness.ts";

const STALE_MS = 2000; // the smallest staleMs the config allows: the test waits just past it

/** How long ago the instance's liveness lock was last refreshed, in ms. */
async function lockAgeMs(root: string, instanceId: string): Promise<number> {
  return Date.now() - (await lstat(path.join(root, ".instances", `${instanceId}.lock`))).mtimeMs;
}

/** The state letter of a process in /proc/<pid>/stat (`T` = stopped); "" once it is gone. */
async function procState(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
}

describe("regression: a stalled live gateway was judged dead", () => {
  it("a SIGSTOPped gateway silent past staleMs keeps its workspaces through an offline gc and another gateway's start-up collection", async () => {
    const dirs = await makeDirs();
    const settings = { ...dirs, idleTtlMs: 600_000, onStartup: false, staleMs: STALE_MS };
    const child = await spawnGatewayChild(gatewayConfig(settings));
    const client = await connectAdmin(child.url);
    const acks = await Promise.all([0, 1, 2].map((i) => chatSend(client, `live-${i}`, "hello")));
    await waitForTerminals(
      client,
      acks.map((ack) => ack.runId),
    );
    const live = await leaseEntries(dirs.root);
    expect(live).toHaveLength(3);

    process.kill(child.pid, "SIGSTOP"); // the harness SIGKILLs it when the test ends, stopped or not
    await waitUntil(async () => (await procState(child.pid)) === "T", `gateway ${child.pid} to stop`);
    await waitUntil(async () => (await lockAgeMs(dirs.root, child.instanceId)) > STALE_MS + 250, "the stopped gateway's lock to go stale");

    const config = path.join(dirs.base, "offline.json");
    await writeFile(config, JSON.stringify(gatewayConfig({ ...settings, stateDir: path.join(dirs.base, "offline-state") })));
    const offline = await collectWorkspaces({ configPath: config, env: {} });
    expect(offline).toMatchObject({ reclaimed: 0, kept: 3, failed: 0 });
    expect(await leaseEntries(dirs.root)).toEqual(live);

    const other = await startTestGateway({ ...settings, stateDir: path.join(dirs.base, "other-state"), onStartup: true });
    const startup = await withTimeout(other.startupCollection, "the other gateway's start-up collection", 20_000);
    expect(startup?.sweep).toMatchObject({ reclaimed: 0, kept: 3, failed: 0 });
    expect(startup?.sweep.entries.every((entry) => entry.instanceId === child.instanceId && entry.action === "keep")).toBe(true);
    expect(await leaseEntries(dirs.root)).toEqual(live);
    expect(await lockAgeMs(dirs.root, child.instanceId)).toBeGreaterThan(STALE_MS);

    // Resumed, the gateway carries on with the same workspaces.
    process.kill(child.pid, "SIGCONT");
    await waitUntil(async () => (await lockAgeMs(dirs.root, child.instanceId)) < STALE_MS, "the resumed gateway to refresh its lock");
    expect((await chatTurn(client, "live-0", "still here")).state).toBe("final");
    expect(await leaseEntries(dirs.root)).toEqual(live);
    client.ws.terminate();
  });
});
