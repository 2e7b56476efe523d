/**
 * Fault suite: a collector SIGKILLed in the middle of a sweep, holding `<root>/.collector.lock`.
 * The next start's collection must still run and reclaim what the crashes left. (Found by the
 * seeded SIGKILL suite, when a gateway died during its own start-up collection; pinned down here
 * with a collector child that dies at a chosen fs operation of its sweep.) The other direction
 * too: a collector that is alive, only frozen (SIGSTOP) mid-sweep, keeps its lock.
 */
import { existsSync, readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { withTimeout } from "../protocol/helpers.ts";
import {
  type TestDirs,
  chatSend,
  connectAdmin,
  gatewayConfig,
  leaseEntries,
  makeDirs,
  spawnGatewayChild,
  startTestGateway,
  waitForTerminals,
  waitUntil,
} from "../gateway/lifecycle-harness.ts";
import type { KillFault } from "../fixtures/kill-fs-port.ts";
import { escapeRegExp, spawnNode } from "./fault-helpers.ts";

const SWEEP_CHILD = fileURLToPath(new URL("../fixtures/sweep-child.ts", import.meta.url));

/** Three orphans in the root: the live workspaces of a SIGKILLed gateway. Returns their names. */
async function makeOrphans(dirs: TestDirs): Promise<string[]> {
  const gatewayChild = await spawnGatewayChild(gatewayConfig({ ...dirs, idleTtlMs: 600_000, onStartup: false }));
  const client = await connectAdmin(gatewayChild.url);
  const acks = await Promise.all([0, 1, 2].map((i) => chatSend(client, `orphan-${i}`, "hello")));
  await waitForTerminals(
    client,
    acks.map((ack) => ack.runId),
  );
  client.ws.terminate();
  process.kill(gatewayChild.pid, "SIGKILL");
  await withTimeout(gatewayChild.exited, "the gateway child to die", 10_000);
  const orphans = await leaseEntries(dirs.root);
  expect(orphans).toHaveLength(3);
  return orphans;
}

/** Polls /proc until the process is stopped (state T). */
async function waitForStopped(pid: number): Promise<void> {
  await waitUntil(async () => {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
  }, `process ${pid} to stop`);
}

describe("a collector killed or frozen mid-sweep", () => {
  it("leaves its lock behind, and the next start's collection takes it over and reclaims everything", async () => {
    // Killed right after taking the lock: the narrowest case (a gateway killed at that moment of its start-up collection).
    const dirs = await makeDirs();
    const orphans = await makeOrphans(dirs);

    // A collector that dies the moment it has taken the collector lock, before it does anything else.
    const fault: KillFault = { op: "lockMkdir", pathPattern: `^${escapeRegExp(path.join(dirs.root, ".collector.lock"))}$`, occurrence: 1, when: "after" };
    const collector = spawnNode([SWEEP_CHILD, dirs.root, JSON.stringify(fault)]);
    expect(await withTimeout(collector.exited, "the collector child to die", 15_000)).toEqual({ code: null, signal: "SIGKILL" });
    expect(collector.stderr()).toContain("[fault] SIGKILL after lockMkdir");
    expect(existsSync(path.join(dirs.root, ".collector.lock"))).toBe(true);
    expect(await leaseEntries(dirs.root)).toEqual(orphans);

    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 60_000, onStartup: true });
    const report = await withTimeout(gateway.startupCollection, "the start-up collection", 20_000);
    expect(report?.sweep).toMatchObject({ reclaimed: 3, failed: 0 });
    expect(report?.ledgerReconciled).toBe(3);
    expect(await leaseEntries(dirs.root)).toEqual([]);
    expect(existsSync(path.join(dirs.root, ".collector.lock"))).toBe(false);
    expect(readdirSync(path.join(dirs.root, ".instances")).filter((name) => name.startsWith("collector-"))).toEqual([]);
  });

  it("a collector that is alive but frozen mid-sweep keeps its lock: no one else sweeps until it resumes and finishes", async () => {
    const dirs = await makeDirs();
    const orphans = await makeOrphans(dirs);
    const fault: KillFault = { op: "lstat", pathPattern: `^${escapeRegExp(path.join(dirs.root, orphans[0] as string))}$`, occurrence: 1, when: "before", signal: "SIGSTOP" };
    const collector = spawnNode([SWEEP_CHILD, dirs.root, JSON.stringify(fault)]);
    await waitForStopped(collector.pid);

    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 60_000, onStartup: true });
    expect(await withTimeout(gateway.startupCollection, "the start-up collection", 20_000)).toBeUndefined();
    await expect(gateway.collect()).rejects.toMatchObject({ code: "WS_GC_BUSY" });
    expect(await leaseEntries(dirs.root)).toEqual(orphans);

    process.kill(collector.pid, "SIGCONT");
    expect(await withTimeout(collector.exited, "the resumed collector to finish", 15_000)).toEqual({ code: 0, signal: null });
    expect(JSON.parse(collector.stdout())).toMatchObject({ reclaimed: 3, failed: 0 });
    expect(await leaseEntries(dirs.root)).toEqual([]);
    const after = await gateway.collect();
    expect(after.ledgerReconciled).toBe(3);
  });
});
