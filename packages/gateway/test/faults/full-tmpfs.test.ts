/**
 * Fault suite 4: the ephemeral root lives on a small tmpfs (512 KiB) that fills up mid-session.
 * A new session then gets a clear WORKSPACE_UNAVAILABLE error naming ENOSPC (no crash, no
 * half-made directory), the gateway keeps answering, a workspace-less chat still works, deleting
 * the session that filled the disk removes its directory on the full file system, and the next
 * session gets a workspace again. Needs root (mount); skipped with a printed reason when tmpfs
 * cannot be mounted. The tmpfs is always unmounted when the test ends.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmdirSync } from "node:fs";
import { mkdir, open, readdir, statfs } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { MARKER_NAME } from "@ocgw/workspace";
import { describe, expect, it, onTestFinished } from "vitest";
import { call, chatSend, chatTurn, connectAdmin, leaseEntries, makeDirs, readLedger, startTestGateway, waitForTerminals } from "../gateway/lifecycle-harness.ts";

function mountTmpfs(dir: string): void {
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", dir], { stdio: ["ignore", "ignore", "pipe"] });
}

function unmount(dir: string): void {
  try {
    execFileSync("umount", [dir], { stdio: "ignore" });
  } catch {
    // Something still holds it: detach it now, the kernel frees it when the last user goes.
    execFileSync("umount", ["-l", dir], { stdio: "ignore" });
  }
}

function skipReason(): string | null {
  if (process.getuid?.() !== 0) return "not running as root: cannot mount a tmpfs";
  const probe = mkdtempSync(path.join(os.tmpdir(), "ocgw-tmpfs-probe-"));
  try {
    mountTmpfs(probe);
    unmount(probe);
    return null;
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString("utf8").trim();
    return `mount -t tmpfs failed here (${stderr || (error instanceof Error ? error.message : String(error))})`;
  } finally {
    rmdirSync(probe);
  }
}

const reason = skipReason();
if (reason !== null) console.log(`full-tmpfs.test.ts skipped: ${reason}`);

/** Appends to `file` until the file system says ENOSPC, with ever smaller writes; returns bytes written. */
async function fillUp(file: string): Promise<number> {
  const handle = await open(file, "a", 0o600);
  let total = 0;
  try {
    for (const size of [65_536, 4096, 512, 1]) {
      const chunk = Buffer.alloc(size, 0x5a);
      for (;;) {
        try {
          total += (await handle.write(chunk)).bytesWritten;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
          break;
        }
      }
    }
  } finally {
    await handle.close();
  }
  return total;
}

interface Lease {
  state: string;
  path: string | null;
  error: string | null;
  outcome: string | null;
}

describe.skipIf(reason !== null)("a full tmpfs under the ephemeral root", () => {
  it("fails a new workspace with a clear ENOSPC error, keeps serving, and cleans up on the full file system", async () => {
    const dirs = await makeDirs();
    const mnt = path.join(dirs.base, "tmpfs");
    await mkdir(mnt);
    mountTmpfs(mnt);
    // Registered after makeDirs' removal, so it runs before it (onTestFinished hooks run last-in, first-out).
    onTestFinished(() => unmount(mnt));
    const root = path.join(mnt, "root");
    const gateway = await startTestGateway({ stateDir: dirs.stateDir, root, idleTtlMs: 60_000 });
    await gateway.startupCollection;
    const client = await connectAdmin(gateway.url);

    for (const key of ["live-0", "live-1", "live-2"]) expect((await chatTurn(client, key, `hello ${key}`)).state).toBe("final");
    const live = await leaseEntries(root);
    expect(live).toHaveLength(3);
    const leaseOf = async (key: string): Promise<Lease[]> => (await call<{ leases: Lease[] }>(client, "workspaces.list", { sessionKey: key })).leases;
    const fillerDir = (await leaseOf("live-0"))[0]?.path as string;
    expect(live).toContain(path.basename(fillerDir));

    expect(await fillUp(path.join(fillerDir, "filler.bin"))).toBeGreaterThan(0);
    expect((await statfs(mnt)).bavail).toBe(0);

    // A fresh session on the full file system: a clear error, no half-made workspace.
    const fail = await chatTurn(client, "fresh-0", "hello");
    expect(fail.state).toBe("error");
    expect(fail.errorMessage).toMatch(/^No workspace for session "agent:main:fresh-0": /);
    expect(fail.errorCode).toBe("WORKSPACE_UNAVAILABLE");
    expect(fail.errorMessage).toContain("ENOSPC");
    const [failedRow] = await leaseOf("fresh-0");
    expect(failedRow?.state).toBe("failed");
    expect(failedRow?.error).toContain("ENOSPC");
    expect(existsSync(failedRow?.path as string)).toBe(false);
    expect(await leaseEntries(root)).toEqual(live);

    // Still serving: health, and a chat that needs no workspace.
    expect(await call(client, "health")).toMatchObject({ ok: true });
    const noWorkspace = await chatSend(client, "no-ws", "hello", { workspace: false });
    expect((await waitForTerminals(client, [noWorkspace.runId])).get(noWorkspace.runId)?.state).toBe("final");

    // Cleanup works on the full file system, and frees it.
    await call(client, "sessions.delete", { key: "live-0" });
    expect(existsSync(fillerDir)).toBe(false);
    expect(await leaseEntries(root)).toEqual(live.filter((name) => name !== path.basename(fillerDir)));
    expect((await leaseOf("live-0"))[0]).toMatchObject({ state: "released", outcome: "removed" });
    expect((await statfs(mnt)).bavail).toBeGreaterThan(0);

    // The next fresh session, and a retry of the failed one, get workspaces again.
    for (const key of ["fresh-1", "fresh-0"]) {
      expect((await chatTurn(client, key, "hello again")).state).toBe("final");
      const lease = (await leaseOf(key)).find((row) => row.state === "live");
      expect(lease?.path).toBeTruthy();
      expect(existsSync(path.join(lease?.path as string, MARKER_NAME))).toBe(true);
    }
    expect(await leaseEntries(root)).toHaveLength(4);

    client.ws.terminate();
    await gateway.close();
    expect(await leaseEntries(root)).toEqual([]);
    expect(await readdir(root)).toEqual([".instances"]);
    expect(await readdir(path.join(root, ".instances"))).toEqual([]);
    // Every lease ended; the one whose acquire failed stays `failed` until a collector sees its
    // instance dead, which the next start's does.
    const rows = readLedger(dirs.stateDir);
    expect(rows.filter((row) => row.state !== "released").map((row) => [row.sessionKey, row.state])).toEqual([["agent:main:fresh-0", "failed"]]);
    const next = await startTestGateway({ stateDir: dirs.stateDir, root, idleTtlMs: 60_000 });
    expect((await next.startupCollection)?.ledgerReconciled).toBe(1);
    expect(next.store.countLeases()).toMatchObject({ acquiring: 0, live: 0, releasing: 0, failed: 0 });
  });
});
