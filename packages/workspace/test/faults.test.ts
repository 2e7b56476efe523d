import * as path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { BOOTSTRAP_FILES } from "../src/bootstrap.ts";
import { type WorkspaceErrorCode, errnoCode, isWorkspaceError } from "../src/errors.ts";
import type { FsPort } from "../src/fs-port.ts";
import { MARKER_NAME, readMarker } from "../src/marker.ts";
import { type EphemeralProvider, createEphemeralProvider } from "../src/providers/ephemeral.ts";
import { sweep } from "../src/sweep.ts";
import type { WorkspaceLease } from "../src/types.ts";
import { memfsPort, withFaults } from "./helpers.ts";

const ROOT = "/tmp/openclaw-0";

interface Rig {
  provider: EphemeralProvider;
  port: FsPort;
  faults: ReturnType<typeof withFaults>["faults"];
  vol: ReturnType<typeof memfsPort>["vol"];
}

async function rig(): Promise<Rig> {
  const { port: base, vol } = memfsPort();
  const { port, faults } = withFaults(base);
  const provider = await createEphemeralProvider({ root: ROOT, fs: port });
  onTestFinished(async () => {
    faults.clear();
    await provider.close();
  });
  return { provider, port, faults, vol };
}

function rootEntries(vol: Rig["vol"]): string[] {
  return (vol.readdirSync(ROOT) as string[]).map(String).sort();
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );
}

/** The error is a WorkspaceError of `code` whose cause is a system error with errno `errno`. */
function expectWorkspaceError(error: unknown, code: WorkspaceErrorCode, errno: string): void {
  expect(isWorkspaceError(error, code), String(error)).toBe(true);
  expect(errnoCode((error as Error).cause), "cause").toBe(errno);
}

/**
 * Nothing half-made is left untracked: every entry of the root is the instances directory, a
 * trash entry, or a directory with a valid marker whose lease the provider still lists.
 */
async function expectNothingUntracked(r: Rig): Promise<void> {
  const listed = new Set((await r.provider.list()).map((record) => record.leaseId));
  for (const name of rootEntries(r.vol)) {
    if (name === ".instances" || name.startsWith(".trash-")) continue;
    const read = await readMarker(r.port, path.join(ROOT, name));
    expect(read.ok, `${name} has no valid marker`).toBe(true);
    if (read.ok) {
      expect(read.marker.name).toBe(name);
      expect(listed.has(read.marker.leaseId), `${name} is not listed`).toBe(true);
    }
  }
}

describe.each(["EACCES", "ENOSPC"])("faults: %s", (errno) => {
  it("at creation → WS_CREATE_FAILED and no new entry in the root", async () => {
    const r = await rig();
    const before = rootEntries(r.vol);
    r.faults.set("createLeaseDir", { code: errno });
    const error = await rejection(r.provider.acquire({ key: "k" }));
    expectWorkspaceError(error, "WS_CREATE_FAILED", errno);
    expect(rootEntries(r.vol)).toEqual(before);
    expect(await r.provider.list()).toEqual([]);
    await expectNothingUntracked(r);
  });

  it("at marker write → WS_MARKER_FAILED and the new directory is gone", async () => {
    const r = await rig();
    r.faults.set("open", { code: errno, match: (target) => path.basename(target) === MARKER_NAME });
    const error = await rejection(r.provider.acquire({ key: "k" }));
    expectWorkspaceError(error, "WS_MARKER_FAILED", errno);
    expect(rootEntries(r.vol)).toEqual([".instances"]);
    expect(await r.provider.list()).toEqual([]);
    await expectNothingUntracked(r);
  });

  it("at seeding → WS_SEED_FAILED and the half-seeded directory is gone", async () => {
    const r = await rig();
    const names = Object.keys(BOOTSTRAP_FILES);
    // Not the first template: some files are already written when the fault hits.
    const victim = names[2] as string;
    r.faults.set("writeFile", { code: errno, match: (target) => path.basename(target) === victim });
    const error = await rejection(r.provider.acquire({ key: "k" }));
    expectWorkspaceError(error, "WS_SEED_FAILED", errno);
    expect(rootEntries(r.vol)).toEqual([".instances"]);
    expect(await r.provider.list()).toEqual([]);
    await expectNothingUntracked(r);
  });

  it("at removal, rename failing → outcome failed, lease still listed and marked; a later release removes it", async () => {
    const r = await rig();
    const lease = await r.provider.acquire({ key: "k" });
    const dir = lease.path as string;
    r.faults.set("rename", { code: errno });

    const failed = await r.provider.release(lease, "delete");
    expect(failed.outcome).toBe("failed");
    expectWorkspaceError(failed.error, "WS_REMOVE_FAILED", errno);
    expect((await r.provider.list()).map((record) => record.leaseId)).toEqual([lease.leaseId]);
    const marker = await readMarker(r.port, dir);
    expect(marker.ok && marker.marker.leaseId).toBe(lease.leaseId);
    expect(rootEntries(r.vol).filter((name) => name.startsWith(".trash-"))).toEqual([]);
    await expectNothingUntracked(r);

    r.faults.delete("rename");
    const retried = await r.provider.release(lease, "delete");
    expect(retried.outcome).toBe("removed");
    expect(r.vol.existsSync(dir)).toBe(false);
    expect(await r.provider.list()).toEqual([]);
    expect(rootEntries(r.vol)).toEqual([".instances"]);
  });

  it("at removal, rm failing → outcome trashed; another instance's sweep reclaims the trash after the owner closes", async () => {
    const r = await rig();
    const lease: WorkspaceLease = await r.provider.acquire({ key: "k" });
    r.faults.set("rm", { code: errno });

    const trashed = await r.provider.release(lease, "delete");
    expect(trashed.outcome).toBe("trashed");
    expectWorkspaceError(trashed.error, "WS_REMOVE_FAILED", errno);
    const trashName = path.basename(trashed.trashPath as string);
    expect(trashName.startsWith(`.trash-${r.provider.instance.id}-`)).toBe(true);
    expect(path.dirname(trashed.trashPath as string)).toBe(ROOT);
    expect(rootEntries(r.vol)).toEqual([".instances", trashName].sort());
    expect(r.vol.existsSync(lease.path as string)).toBe(false);
    expect(await r.provider.list()).toEqual([]);
    await expectNothingUntracked(r);

    r.faults.delete("rm");
    await r.provider.close();
    const other = await createEphemeralProvider({ root: ROOT, fs: r.port });
    onTestFinished(() => other.close());
    const result = await sweep({ root: ROOT, fs: r.port, instance: other.instance });
    const entry = result.entries.find((candidate) => candidate.name === trashName);
    expect(entry).toMatchObject({ kind: "trash", action: "reclaim", outcome: "removed", instanceId: r.provider.instance.id });
    expect(result.reclaimed).toBe(1);
    expect(r.vol.existsSync(trashed.trashPath as string)).toBe(false);
    expect(rootEntries(r.vol)).toEqual([".instances"]);
  });
});

describe("faults: permissions memfs enforces even for root", () => {
  it("a 0500 root makes acquire fail with WS_CREATE_FAILED (cause EACCES), nothing else", async () => {
    const r = await rig();
    r.vol.chmodSync(ROOT, 0o500);
    const error = await rejection(r.provider.acquire({ key: "k" }));
    expectWorkspaceError(error, "WS_CREATE_FAILED", "EACCES");
    expect(rootEntries(r.vol)).toEqual([".instances"]);
    expect(await r.provider.list()).toEqual([]);
    await expectNothingUntracked(r);
  });

  it("a 0500 directory inside a workspace is made writable and removed", async () => {
    const r = await rig();
    const lease = await r.provider.acquire({ key: "k" });
    const locked = path.join(lease.path as string, "locked");
    r.vol.mkdirSync(path.join(locked, "inner"), { recursive: true });
    r.vol.writeFileSync(path.join(locked, "inner", "f.txt"), "x");
    r.vol.chmodSync(path.join(locked, "inner"), 0o500);
    r.vol.chmodSync(locked, 0o500);
    const result = await r.provider.release(lease, "delete");
    expect(result.outcome, String(result.error)).toBe("removed");
    expect(rootEntries(r.vol)).toEqual([".instances"]);
  });
});
