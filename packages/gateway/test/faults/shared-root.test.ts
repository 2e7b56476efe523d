/**
 * Fault suite 2: two gateways share one ephemeral root and one of them restarts again and again.
 * Child A holds 10 live workspaces; gateway B (its own state dir, the same root) is started and
 * closed five times, each start running its start-up collection and some runs holding sessions of
 * their own (one of them mid-run at close). After each of B's runs, A's directories, inodes,
 * markers and liveness record are exactly as before. Then A is SIGKILLed and B's next start
 * reclaims exactly A's 10 and nothing else.
 */
import { existsSync, readdirSync } from "node:fs";
import { lstat } from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { type GatewayHandle, startGateway } from "../../src/index.ts";
import { withTimeout } from "../protocol/helpers.ts";
import {
  type ChildGateway,
  call,
  chatSend,
  chatTurn,
  connectAdmin,
  gatewayConfig,
  leaseEntries,
  ledger,
  makeDirs,
  processAlive,
  readLedger,
  spawnGatewayChild,
  waitForTerminals,
} from "../gateway/lifecycle-harness.ts";
import { readMarkerBytes, waitForLiveLease } from "./fault-helpers.ts";

/** What must not change about one of A's workspaces: its name, identity and marker bytes. */
async function fingerprint(dir: string): Promise<string> {
  const st = await lstat(dir, { bigint: true });
  return `${path.basename(dir)} ${st.dev}/${st.ino} ${st.isDirectory() ? "dir" : "other"} mode=${(st.mode & 0o7777n).toString(8)} marker=${await readMarkerBytes(dir)}`;
}

async function startB(stateDir: string, root: string): Promise<GatewayHandle> {
  const handle = await startGateway(gatewayConfig({ stateDir, root, idleTtlMs: 600_000, onStartup: true }), { log: () => undefined });
  onTestFinished(() => handle.close());
  return handle;
}

describe("two gateways sharing one ephemeral root", () => {
  it("B restarting five times never touches A's live workspaces; once A is SIGKILLed, B's next start reclaims exactly A's 10", async () => {
    const dirs = await makeDirs();
    const stateA = path.join(dirs.base, "state-a");
    const stateB = path.join(dirs.base, "state-b");
    const childA: ChildGateway = await spawnGatewayChild(gatewayConfig({ stateDir: stateA, root: dirs.root, idleTtlMs: 600_000 }));
    const clientA = await connectAdmin(childA.url);
    const acks = await Promise.all(Array.from({ length: 10 }, (_, i) => chatSend(clientA, `a-${i}`, `hello ${i}`)));
    const terminals = await waitForTerminals(
      clientA,
      acks.map((ack) => ack.runId),
    );
    expect([...terminals.values()].map((event) => event.state)).toEqual(Array(10).fill("final"));
    const dirsA = (await leaseEntries(dirs.root)).map((name) => path.join(dirs.root, name));
    expect(dirsA).toHaveLength(10);
    const fingerprintsA = await Promise.all(dirsA.map(fingerprint));
    expect(fingerprintsA.every((line) => line.includes('"tool":"ocgw"'))).toBe(true);
    const recordA = path.join(dirs.root, ".instances", `${childA.instanceId}.json`);
    const lockA = path.join(dirs.root, ".instances", `${childA.instanceId}.lock`);

    for (let run = 0; run < 5; run += 1) {
      const rowsBefore = run === 0 ? 0 : readLedger(stateB).length;
      const b = await startB(stateB, dirs.root);
      expect(b.instanceId).not.toBe(childA.instanceId);
      const startup = await withTimeout(b.startupCollection, `B's start-up collection (run ${run})`, 20_000);
      expect(startup?.sweep).toMatchObject({ reclaimed: 0, kept: 10, reported: 0, failed: 0 });
      expect(startup?.sweep.entries.filter((entry) => entry.action === "keep").every((entry) => entry.instanceId === childA.instanceId)).toBe(true);

      // Runs 1, 3 and 4 hold sessions of their own: idle ones, and on run 3 one mid-run at close.
      const own = [0, 2, 0, 3, 1][run] as number;
      const dirsB: string[] = [];
      if (own > 0) {
        const clientB = await connectAdmin(b.url);
        for (let i = 0; i < own; i += 1) {
          const end = await chatTurn(clientB, `b-${run}-${i}`, "hello from B");
          expect(end.state).toBe("final");
        }
        if (run === 3) {
          await chatSend(clientB, `b-${run}-busy`, "/echo:sleep 600000 busy");
          await waitForLiveLease(clientB, `b-${run}-busy`);
        }
        dirsB.push(...(await leaseEntries(dirs.root)).map((name) => path.join(dirs.root, name)).filter((dir) => !dirsA.includes(dir)));
        expect(dirsB).toHaveLength(own + (run === 3 ? 1 : 0));
        // A collection while both hold live workspaces: each keeps the other's.
        const both = await b.collect();
        expect(both.sweep).toMatchObject({ reclaimed: 0, kept: 10 + dirsB.length, failed: 0 });
      }

      await b.close();
      expect(await leaseEntries(dirs.root)).toEqual(dirsA.map((dir) => path.basename(dir)).sort());
      expect(await Promise.all(dirsA.map(fingerprint))).toEqual(fingerprintsA);
      expect(existsSync(recordA) && existsSync(lockA)).toBe(true);
      expect(dirsB.some((dir) => existsSync(dir))).toBe(false);
      // B's close released each of its own, once: one row per workspace, released at shutdown.
      const rowsB = readLedger(stateB).slice(rowsBefore);
      expect(rowsB.map((row) => row.path).sort()).toEqual([...dirsB].sort());
      for (const row of rowsB) expect(row).toMatchObject({ state: "released", releaseReason: "shutdown", outcome: "removed" });
      expect(await processAlive(childA.pid)).toBe(true);
    }
    // A's gateway still knows and serves its workspaces: a turn on one of them reuses it.
    const again = await chatTurn(clientA, "a-0", "still here");
    expect(again.state).toBe("final");
    const { counts } = await call<{ counts: Record<string, number> }>(clientA, "workspaces.list", {});
    expect(counts).toMatchObject({ live: 10, releasing: 0, failed: 0 });
    clientA.ws.terminate();

    process.kill(childA.pid, "SIGKILL");
    expect(await withTimeout(childA.exited, "A to die", 10_000)).toEqual({ code: null, signal: "SIGKILL" });
    const b = await startB(stateB, dirs.root);
    const report = await withTimeout(b.startupCollection, "B's start-up collection after A died", 20_000);
    expect(report?.sweep).toMatchObject({ reclaimed: 10, kept: 0, reported: 0, failed: 0 });
    const reclaimed = report?.sweep.entries.filter((entry) => entry.action === "reclaim") ?? [];
    expect(reclaimed.map((entry) => entry.path).sort()).toEqual([...dirsA].sort());
    expect(reclaimed.every((entry) => entry.instanceId === childA.instanceId && entry.outcome === "removed")).toBe(true);
    expect(await leaseEntries(dirs.root)).toEqual([]);
    expect(readdirSync(path.join(dirs.root, ".instances")).some((name) => name.startsWith(childA.instanceId))).toBe(false);
    // B's ledger never held A's rows; A's own state dir gets them closed by A's next start.
    expect(ledger(b.store).some((row) => row.instanceId === childA.instanceId)).toBe(false);
    await b.close();
    const restartedA = await startB(stateA, dirs.root);
    const reconciled = await withTimeout(restartedA.startupCollection, "A's restart collection", 20_000);
    expect(reconciled?.ledgerReconciled).toBe(10);
    expect(restartedA.store.countLeases()).toMatchObject({ acquiring: 0, live: 0, releasing: 0, failed: 0, released: 10 });
  });
});
