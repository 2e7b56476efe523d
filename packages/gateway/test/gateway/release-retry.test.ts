import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, expect, it, onTestFinished } from "vitest";
import { call, chatTurn, connectAdmin, ledger, leaseEntries, makeDirs, startTestGateway } from "./lifecycle-harness.ts";

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
