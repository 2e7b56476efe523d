import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { call, chatEvents, chatSend, chatTurn, connectAdmin, ledger, leaseEntries, makeDirs, startTestGateway, waitForTerminals, waitUntil } from "./lifecycle-harness.ts";

/** `chattr +i` makes the root refuse renames even for root: a release that fails outright, on a real disk. */
function immutable(dir: string, on: boolean): boolean {
  try {
    execFileSync("chattr", [on ? "+i" : "-i", dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const probe = await makeDirsOutsideTests();
async function makeDirsOutsideTests(): Promise<string | null> {
  const { mkdtemp, rm } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const dir = await mkdtemp(`${tmpdir()}/ocgw-chattr-`);
  const ok = immutable(dir, true) && immutable(dir, false);
  await rm(dir, { recursive: true, force: true });
  return ok ? null : "chattr +i is not supported on the temp file system here";
}
if (probe !== null) console.log(`release-retry.test.ts skipped: ${probe}`);

describe.skipIf(probe !== null)("a release that fails outright is retried, not forgotten", () => {
  it("stays failed in the ledger while the root refuses, and is released by the next collection", async () => {
    const dirs = await makeDirs();
    const gateway = await startTestGateway({ stateDir: dirs.stateDir, root: dirs.root, idleTtlMs: 60_000 });
    await gateway.startupCollection;
    const client = await connectAdmin(gateway.url);
    await chatTurn(client, "stuck", "hello");
    expect(await leaseEntries(dirs.root)).toHaveLength(1);

    expect(immutable(dirs.root, true)).toBe(true);
    onTestFinished(() => void immutable(dirs.root, false));
    await call(client, "sessions.delete", { key: "stuck" });
    const [row] = ledger(gateway.store, "agent:main:stuck");
    expect(row?.state).toBe("failed");
    expect(await leaseEntries(dirs.root)).toHaveLength(1);

    // Still refused: the retry fails again and the sweep cannot even take its lock; nothing changes.
    await expect(gateway.collect()).rejects.toMatchObject({ code: "WS_ROOT_UNAVAILABLE" });
    expect(ledger(gateway.store, "agent:main:stuck")[0]?.state).toBe("failed");

    expect(immutable(dirs.root, false)).toBe(true);
    await gateway.collect();
    const [after] = ledger(gateway.store, "agent:main:stuck");
    expect(after?.state).toBe("released");
    expect(after?.outcome).toBe("removed");
    expect(await leaseEntries(dirs.root)).toEqual([]);
    expect(existsSync(row?.path as string)).toBe(false);
  });
});

/**
 * Replies "started", then, for the message "hold", waits until the file $GO exists before it
 * replies "done": a run that stays busy exactly as long as the test wants, with no timer.
 */
const HOLD_UNTIL_GO = 'read msg; echo started; if [ "$msg" = hold ]; then while [ ! -e "$GO" ]; do sleep 0.05; done; fi; echo "done $msg"';

describe.skipIf(probe !== null)("the retry of a failed release", () => {
  it("regression: a retried release killed the session's current, healthy run (kill by session key)", async () => {
    const dirs = await makeDirs();
    const go = path.join(dirs.base, "go");
    const gateway = await startTestGateway({
      stateDir: dirs.stateDir,
      root: dirs.root,
      idleTtlMs: 60_000,
      runner: { kind: "command", command: { argv: ["sh", "-c", HOLD_UNTIL_GO], env: { GO: go } } },
    });
    await gateway.startupCollection;
    const client = await connectAdmin(gateway.url);
    expect((await chatTurn(client, "reborn", "hello")).state).toBe("final");
    const [failedRow] = ledger(gateway.store, "agent:main:reborn");

    // The first lease's release fails outright, then the root is writable again.
    expect(immutable(dirs.root, true)).toBe(true);
    onTestFinished(() => void immutable(dirs.root, false));
    await call(client, "sessions.delete", { key: "reborn" });
    expect(gateway.store.getLease(failedRow?.leaseId as string)?.state).toBe("failed");
    expect(immutable(dirs.root, false)).toBe(true);

    // A new, healthy run on the same key, busy in its own new workspace while the retry runs.
    const ack = await chatSend(client, "reborn", "hold");
    await waitUntil(() => chatEvents(client, ack.runId).some((event) => event.state === "delta"), "the held run to start");
    const current = ledger(gateway.store, "agent:main:reborn")[1];
    expect(current?.state).toBe("live");

    await call(client, "workspaces.gc", {});
    expect(gateway.store.getLease(failedRow?.leaseId as string)).toMatchObject({ state: "released", outcome: "removed" });
    expect(existsSync(failedRow?.path as string)).toBe(false);

    await writeFile(go, "");
    const terminal = (await waitForTerminals(client, [ack.runId])).get(ack.runId);
    expect(terminal?.errorMessage).toBeUndefined();
    expect(terminal?.state).toBe("final");
    expect(gateway.store.getLease(current?.leaseId as string)?.state).toBe("live");
    expect(existsSync(current?.path as string)).toBe(true);
  });
});
