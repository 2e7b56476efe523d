/**
 * Workspaces of a gateway that dies (SIGKILL) are reclaimed by the next start's collector, a
 * SIGTERM shuts down gracefully, and a live gateway sharing the root is never touched. Real child
 * processes started from `test/fixtures/gateway-child.ts`.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import * as path from "node:path";
import { MARKER_NAME, leaseDirName } from "@ocgw/workspace";
import { describe, expect, it, onTestFinished } from "vitest";
import { withTimeout } from "../protocol/helpers.ts";
import { type ChildGateway, chatEvents, chatSend, connectAdmin, gatewayConfig, leaseEntries, ledger, makeDirs, processAlive, readLedger, spawnGatewayChild, startTestGateway, waitForTerminals, waitUntil } from "./lifecycle-harness.ts";

/** Opens `count` sessions with live ephemeral workspaces on a child gateway; returns their directories. */
async function openSessions(child: ChildGateway, root: string, count: number, prefix: string): Promise<string[]> {
  const client = await connectAdmin(child.url);
  const acks = await Promise.all(Array.from({ length: count }, (_, i) => chatSend(client, `${prefix}-${i}`, `hello ${i}`)));
  const terminals = await waitForTerminals(
    client,
    acks.map((ack) => ack.runId),
  );
  expect([...terminals.values()].every((event) => event.state === "final")).toBe(true);
  const entries = await leaseEntries(root);
  expect(entries).toHaveLength(count);
  client.ws.terminate();
  return entries.map((name) => path.join(root, name));
}

async function sigkill(child: ChildGateway): Promise<void> {
  process.kill(child.pid, "SIGKILL");
  // Reaped by us (the parent) before anyone probes its pid.
  expect(await withTimeout(child.exited, "the SIGKILLed child to exit", 10_000)).toEqual({ code: null, signal: "SIGKILL" });
}

describe("crash recovery", () => {
  it("the next start's collector reclaims every workspace of a SIGKILLed gateway, without any RPC", async () => {
    const dirs = await makeDirs();
    const child = await spawnGatewayChild(gatewayConfig({ ...dirs, idleTtlMs: 600_000 }));
    const leaseDirs = await openSessions(child, dirs.root, 50, "crash");
    const oldRows = readLedger(dirs.stateDir);
    expect(oldRows).toHaveLength(50);
    expect(oldRows.every((row) => row.state === "live" && row.instanceId === child.instanceId)).toBe(true);

    await sigkill(child);
    expect(await leaseEntries(dirs.root)).toHaveLength(50);

    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 600_000, onStartup: true });
    expect(gateway.instanceId).not.toBe(child.instanceId);
    const report = await withTimeout(gateway.startupCollection, "the start-up collection", 20_000);

    expect(report?.sweep.reclaimed).toBe(50);
    expect(report?.sweep.failed).toBe(0);
    expect(report?.ledgerReconciled).toBe(50);
    expect(await leaseEntries(dirs.root)).toEqual([]);
    expect(readdirSync(dirs.root).every((name) => name === ".instances" || name === ".collector.lock")).toBe(true);
    expect(leaseDirs.some((dir) => existsSync(dir))).toBe(false);
    // The dead instance's liveness record is forgotten; only the new gateway's is left.
    expect(readdirSync(path.join(dirs.root, ".instances")).some((name) => name.startsWith(child.instanceId))).toBe(false);

    const rows = ledger(gateway.store).filter((row) => row.instanceId === child.instanceId);
    expect(rows).toHaveLength(50);
    for (const row of rows) expect(row).toMatchObject({ state: "released", releaseReason: "collector" });
    expect(gateway.store.countLeases()).toEqual({ acquiring: 0, live: 0, releasing: 0, released: 50, failed: 0 });
  });

  it("SIGTERM shuts the gateway down gracefully: exit 0, every workspace released", async () => {
    const dirs = await makeDirs();
    const child = await spawnGatewayChild(gatewayConfig({ ...dirs, idleTtlMs: 600_000 }));
    const leaseDirs = await openSessions(child, dirs.root, 10, "term");

    process.kill(child.pid, "SIGTERM");
    expect(await withTimeout(child.exited, "the child to exit after SIGTERM", 15_000)).toEqual({ code: 0, signal: null });

    expect(await leaseEntries(dirs.root)).toEqual([]);
    expect(leaseDirs.some((dir) => existsSync(dir))).toBe(false);
    const rows = readLedger(dirs.stateDir);
    expect(rows).toHaveLength(10);
    for (const row of rows) expect(row).toMatchObject({ state: "released", releaseReason: "shutdown", outcome: "removed" });
  });

  it("a live gateway sharing the root is untouched by another's collector until it dies", async () => {
    const dirs = await makeDirs();
    const stateA = path.join(dirs.base, "state-a");
    const stateB = path.join(dirs.base, "state-b");
    const childA = await spawnGatewayChild(gatewayConfig({ stateDir: stateA, root: dirs.root, idleTtlMs: 600_000 }));
    const dirsA = await openSessions(childA, dirs.root, 5, "shared");

    const gatewayB = await startTestGateway({ stateDir: stateB, root: dirs.root, idleTtlMs: 600_000, onStartup: true });
    const startup = await withTimeout(gatewayB.startupCollection, "B's start-up collection", 20_000);
    expect(startup?.sweep).toMatchObject({ reclaimed: 0, kept: 5, failed: 0 });
    expect(dirsA.every((dir) => existsSync(dir))).toBe(true);
    expect(await leaseEntries(dirs.root)).toEqual(dirsA.map((dir) => path.basename(dir)).sort());

    await sigkill(childA);
    const report = await withTimeout(gatewayB.collect(), "B's collection after A died", 20_000);
    expect(report.sweep).toMatchObject({ reclaimed: 5, failed: 0 });
    expect(dirsA.some((dir) => existsSync(dir))).toBe(false);
    expect(await leaseEntries(dirs.root)).toEqual([]);
    // A's ledger is its own: B neither has nor needs its rows; A's next start closes them.
    expect(ledger(gatewayB.store)).toEqual([]);
  });

  it("regression: a workspace whose marker was deleted is reclaimed on the ledger's proof (path and dev/ino), not reported forever", async () => {
    const dirs = await makeDirs();
    const child = await spawnGatewayChild(gatewayConfig({ ...dirs, idleTtlMs: 600_000 }));
    await openSessions(child, dirs.root, 2, "unmarked");
    const rows = readLedger(dirs.stateDir);
    const wiped = rows.find((row) => row.sessionKey === "agent:main:unmarked-0");
    const swapped = rows.find((row) => row.sessionKey === "agent:main:unmarked-1");
    const wipedDir = wiped?.path as string;
    const swappedDir = swapped?.path as string;

    // The agent's `git clean -fdx` removes the marker; the directory is the very one the ledger recorded.
    await rm(path.join(wipedDir, MARKER_NAME));
    // Same path as a ledger row, but another directory (another inode): not provably ours.
    const stand = path.join(dirs.base, "stand-in");
    await mkdir(stand);
    await rm(swappedDir, { recursive: true });
    await rename(stand, swappedDir);
    expect(statSync(swappedDir).ino.toString()).not.toBe(swapped?.ino);
    // A lookalike name with no ledger row at all.
    const lookalike = path.join(dirs.root, leaseDirName("agent:main:unmarked-0"));
    await mkdir(lookalike, { mode: 0o700 });
    await sigkill(child);

    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 600_000, onStartup: true });
    const report = await withTimeout(gateway.startupCollection, "the start-up collection", 20_000);

    expect(existsSync(wipedDir)).toBe(false);
    expect(gateway.store.getLease(wiped?.leaseId as string)).toMatchObject({ state: "released", releaseReason: "collector", outcome: "removed" });
    expect(report?.sweep.entries.find((entry) => entry.path === wipedDir)).toMatchObject({ action: "reclaim", outcome: "removed" });

    expect(existsSync(lookalike)).toBe(true);
    expect(existsSync(swappedDir)).toBe(true);
    const reported = (report?.sweep.entries ?? []).filter((entry) => entry.action === "report").map((entry) => entry.path);
    expect(reported.sort()).toEqual([lookalike, swappedDir].sort());
    expect(gateway.store.getLease(swapped?.leaseId as string)?.state).toBe("live");

    // A second collection changes nothing: what the ledger cannot prove stays reported.
    const again = await gateway.collect();
    expect(again.sweep).toMatchObject({ reclaimed: 0, reported: 2, failed: 0 });
    expect(existsSync(lookalike) && existsSync(swappedDir)).toBe(true);
  });
});

// Regression (found by the model-based lifecycle test): a SIGKILLed gateway's runs outlive it, and
// the next start's collector removed their workspace while they still ran inside it.
describe.runIf(process.platform === "linux")("a crashed gateway's runs", () => {
  it("are stopped before the next start's collector removes the workspace they still work in", async () => {
    const dirs = await makeDirs();
    // The run leaves a process working in its workspace, then ends.
    const runner = { kind: "command" as const, command: { argv: ["sh", "-c", "sleep 300 </dev/null >/dev/null 2>&1 & echo $!"] } };
    const child = await spawnGatewayChild(gatewayConfig({ ...dirs, idleTtlMs: 600_000, runner }));
    const client = await connectAdmin(child.url);
    const ack = await chatSend(client, "orphaned", "start");
    const terminal = (await waitForTerminals(client, [ack.runId])).get(ack.runId);
    expect(terminal?.state).toBe("final");
    const text = ((terminal?.["message"] as { content: { text: string }[] } | undefined)?.content[0]?.text ?? "").trim();
    const pid = Number(text);
    expect(Number.isInteger(pid) && pid > 0, `the background pid in "${text}"`).toBe(true);
    onTestFinished(() => {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone, as it should be
      }
    });
    const [leaseDir] = (await leaseEntries(dirs.root)).map((name) => path.join(dirs.root, name));
    client.ws.terminate();
    await sigkill(child);
    expect(await processAlive(pid), "the run's process outlives the SIGKILLed gateway").toBe(true);

    const next = await startTestGateway({ ...dirs, idleTtlMs: 600_000 });
    await next.startupCollection;
    expect(await processAlive(pid), "stopped before its workspace was removed").toBe(false);
    expect(existsSync(leaseDir as string)).toBe(false);
  });
});

// Regression (found by the model-based test's long form: agent(main, hang), SIGKILL, restart): a
// crashed gateway's runs went on running outside any ephemeral workspace, for good.
describe.runIf(process.platform === "linux")("a crashed gateway's runs outside any ephemeral workspace", () => {
  it("are stopped by the next start, running or lingering, and only once their gateway is proven dead", async () => {
    const dirs = await makeDirs();
    // "hang": a run that keeps running (prints its pid first); anything else: a run that leaves a job behind and ends.
    const script = 'read -r msg; if [ "$msg" = hang ]; then echo "$$"; exec sleep 300; fi; sleep 300 </dev/null >/dev/null 2>&1 & echo "$!"';
    const settings = { ...dirs, idleTtlMs: 600_000, implicit: "none" as const, runner: { kind: "command" as const, command: { argv: ["sh", "-c", script] } } };
    const child = await spawnGatewayChild(gatewayConfig(settings));
    const client = await connectAdmin(child.url);
    const lingering = await chatSend(client, "lingering", "leave a job");
    const lingeringText = (waitedText(await waitForTerminals(client, [lingering.runId]), lingering.runId));
    const hang = await chatSend(client, "hanging", "hang");
    await waitUntil(() => chatEvents(client, hang.runId).some((event) => event.state === "delta"), "the hanging run's first delta");
    const pids = [Number(lingeringText), Number(deltaText(chatEvents(client, hang.runId)))];
    for (const pid of pids) expect(Number.isInteger(pid) && pid > 1, `pid ${pid}`).toBe(true);
    onTestFinished(() => killLeftovers(pids));

    // Another gateway on the same state directory while this one lives: its runs are not proven dead.
    const sharing = await startTestGateway(settings);
    await sharing.close();
    for (const pid of pids) expect(await processAlive(pid), `${pid} of a live gateway`).toBe(true);

    client.ws.terminate();
    await sigkill(child);
    for (const pid of pids) expect(await processAlive(pid), `${pid} outlives the SIGKILLed gateway`).toBe(true);
    const log: string[] = [];
    await startTestGateway({ ...settings, onStartup: false }, (line) => log.push(line));
    for (const pid of pids) expect(await processAlive(pid), `${pid} stopped by the next start`).toBe(false);
    expect(log).toContain("stopped 2 process(es) that runs of a previous gateway left running");
  });
});

function waitedText(terminals: Map<string, { [key: string]: unknown }>, runId: string): string {
  const message = terminals.get(runId)?.["message"] as { content: { text: string }[] } | undefined;
  return (message?.content[0]?.text ?? "").trim();
}

function deltaText(events: readonly { [key: string]: unknown }[]): string {
  return events
    .filter((event) => event["state"] === "delta")
    .map((event) => String(event["deltaText"] ?? ""))
    .join("")
    .trim();
}

function killLeftovers(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone, as it should be
    }
  }
}
