import * as path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { BOOTSTRAP_FILES } from "../src/bootstrap.ts";
import { type WorkspaceErrorCode, errnoCode, isWorkspaceError } from "../src/errors.ts";
import type { FsPort } from "../src/fs-port.ts";
import { MARKER_NAME, readMarker } from "../src/marker.ts";
import { type EphemeralProvider, createEphemeralProvider } from "../src/providers/ephemeral.ts";
import { createPersistentProvider } from "../src/providers/persistent.ts";
import { sweep } from "../src/sweep.ts";
import type { WorkspaceLease } from "../src/types.ts";
import { memfsPort, sysError, withFaults } from "./helpers.ts";

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

  it("at removal, the delete failing (rmdir) → outcome trashed; another instance's sweep reclaims the trash after the owner closes", async () => {
    const r = await rig();
    const lease: WorkspaceLease = await r.provider.acquire({ key: "k" });
    r.faults.set("rmdir", { code: errno });

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

    r.faults.delete("rmdir");
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
});

describe("faults: more places", () => {
  it("lstat failing at release → outcome failed (WS_REMOVE_FAILED), lease kept; a directory vanishing at rename → gone", async () => {
    const r = await rig();
    const lease = await r.provider.acquire({ key: "k" });
    const dir = lease.path as string;
    r.faults.set("lstat", { code: "EIO", match: (target) => target === dir });
    const failed = await r.provider.release(lease, "delete");
    expect(failed.outcome).toBe("failed");
    expectWorkspaceError(failed.error, "WS_REMOVE_FAILED", "EIO");
    expect((await r.provider.list()).length).toBe(1);
    await expectNothingUntracked(r);
    r.faults.clear();

    r.faults.set("rename", { code: "ENOENT" });
    const gone = await r.provider.release(lease, "delete");
    expect(gone.outcome).toBe("gone");
    expect(await r.provider.list()).toEqual([]);
  });

  it("seedFrom: a file that vanishes before it is opened is skipped; one that cannot be read fails the acquire cleanly", async () => {
    const r = await rig();
    r.vol.mkdirSync("/agent", { recursive: true });
    r.vol.writeFileSync("/agent/a.txt", "a");
    r.vol.writeFileSync("/agent/b.txt", "b");
    r.faults.set("open", { code: "ENOENT", match: (target) => target === "/agent/a.txt" });
    const lease = await r.provider.acquire({ key: "k", seedFrom: "/agent" });
    expect((r.vol.readdirSync(lease.path as string) as string[]).map(String).sort()).toEqual([MARKER_NAME, "b.txt"].sort());

    r.faults.set("open", { code: "EACCES", match: (target) => target === "/agent/a.txt" });
    const error = await rejection(r.provider.acquire({ key: "k2", seedFrom: "/agent" }));
    expectWorkspaceError(error, "WS_SEED_FAILED", "EACCES");
    expect((await r.provider.list()).length).toBe(1);
    await expectNothingUntracked(r);
  });

  it("the instance record cannot be written → WS_INSTANCE_LOCK_FAILED, no provider", async () => {
    const { port: base, vol } = memfsPort();
    const { port, faults } = withFaults(base);
    faults.set("writeFile", { code: "ENOSPC", match: (target) => target.includes("/.instances/") });
    const error = await rejection(createEphemeralProvider({ root: ROOT, fs: port }));
    expectWorkspaceError(error, "WS_INSTANCE_LOCK_FAILED", "ENOSPC");
    expect((vol.readdirSync(`${ROOT}/.instances`) as string[]).length).toBe(0);
  });

  it("a loose root that cannot be tightened → WS_ROOT_UNSAFE with the cause", async () => {
    const { port: base, vol } = memfsPort();
    const { port, faults } = withFaults(base);
    vol.mkdirSync(ROOT, { recursive: true });
    vol.chmodSync(ROOT, 0o777);
    faults.set("open", { code: "EPERM", match: (target) => target === ROOT });
    const error = await rejection(createEphemeralProvider({ root: ROOT, fs: port }));
    expectWorkspaceError(error, "WS_ROOT_UNSAFE", "EPERM");
    expect(vol.readdirSync(ROOT)).toEqual([]);
    expect(vol.statSync(ROOT).mode & 0o777).toBe(0o777);
  });
});

describe("faults: the collector", () => {
  it("reports an entry it cannot inspect, fails (and keeps) trash it cannot delete, and still finishes", async () => {
    const r = await rig();
    const other = await createEphemeralProvider({ root: ROOT, fs: r.port, seed: "none" });
    onTestFinished(() => other.close());
    const lease = await other.acquire({ key: "k" });
    const deadId = "0123abcd-dead-4000-8000-000000000000";
    const trash = `${ROOT}/.trash-${deadId}-abcdefghij`;
    r.vol.mkdirSync(`${trash}/sub`, { recursive: true });
    await other.close();

    r.faults.set("lstat", { code: "EIO", match: (target) => target === lease.path });
    r.faults.set("rmdir", { code: "EBUSY", match: (target) => target === trash });
    const result = await sweep({ root: ROOT, fs: r.port, instance: r.provider.instance });
    const byName = new Map(result.entries.map((entry) => [entry.path, entry]));
    expect(byName.get(lease.path as string)).toMatchObject({ kind: "unknown", action: "report", reason: "cannot inspect (EIO)" });
    const trashEntry = byName.get(trash);
    expect(trashEntry).toMatchObject({ kind: "trash", action: "reclaim", outcome: "failed" });
    expectWorkspaceError(trashEntry?.error, "WS_REMOVE_FAILED", "EBUSY");
    expect(result.failed).toBe(1);
    expect(r.vol.existsSync(trash)).toBe(true);
    expect(r.vol.existsSync(lease.path as string)).toBe(true);

    r.faults.clear();
    const again = await sweep({ root: ROOT, fs: r.port, instance: r.provider.instance });
    expect(again.reclaimed).toBe(2);
    expect(rootEntries(r.vol)).toEqual([".instances"]);
  });

  it("a marker it cannot open is reported as unreadable", async () => {
    const r = await rig();
    const lease = await r.provider.acquire({ key: "k" });
    r.faults.set("open", { code: "EACCES", match: (target) => path.basename(target) === MARKER_NAME });
    const result = await sweep({ root: ROOT, fs: r.port, instance: r.provider.instance });
    expect(result.entries).toEqual([expect.objectContaining({ path: lease.path, action: "report", reason: "marker unreadable (EACCES)" })]);
  });

  it("a root it cannot inspect → WS_ROOT_UNAVAILABLE; a collector lock it cannot take → WS_ROOT_UNAVAILABLE", async () => {
    const r = await rig();
    r.faults.set("lstat", { code: "EACCES", match: (target) => target === ROOT });
    const uninspectable = await rejection(sweep({ root: ROOT, fs: r.port }));
    expectWorkspaceError(uninspectable, "WS_ROOT_UNAVAILABLE", "EACCES");
    r.faults.clear();

    r.vol.chmodSync(ROOT, 0o500);
    const unlockable = await rejection(sweep({ root: ROOT, fs: r.port }));
    expectWorkspaceError(unlockable, "WS_ROOT_UNAVAILABLE", "EACCES");
  });
});

describe("faults: persistent provider", () => {
  it("a bootstrap file that cannot be written → WS_SEED_FAILED with the cause", async () => {
    const { port: base } = memfsPort();
    const { port, faults } = withFaults(base);
    faults.set("writeFile", { code: "ENOSPC", match: (target) => path.basename(target) === "USER.md" });
    const provider = createPersistentProvider({ stateDir: "/state", fs: port });
    const error = await rejection(provider.acquire({ key: "k" }));
    expectWorkspaceError(error, "WS_SEED_FAILED", "ENOSPC");
    expect(await provider.list()).toEqual([]);
  });
});

/**
 * rm as a non-root user meets it (memfs's own rm ignores modes): a tree holding a directory
 * without u+rwx cannot be emptied, EACCES.
 */
function nonRootRm(base: FsPort, vol: Rig["vol"]): FsPort {
  const locked = (dir: string): boolean => {
    const st = vol.lstatSync(dir);
    if (!st.isDirectory()) return false;
    if ((Number(st.mode) & 0o700) !== 0o700) return true;
    return (vol.readdirSync(dir) as string[]).some((name) => locked(path.join(dir, String(name))));
  };
  const promises = new Proxy(base.promises, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (prop !== "rm" || typeof value !== "function") return value;
      return async (target: string, options: unknown) => {
        if (vol.existsSync(target) && locked(target)) throw sysError("EACCES", "rm", target);
        return (value as (t: string, o: unknown) => Promise<void>).call(base.promises, target, options);
      };
    },
  });
  return { ...base, promises };
}

describe("faults: permissions inside a workspace", () => {
  it("0500 and 0000 directories are made writable (by handle, or by path after lstat) and the tree is removed", async () => {
    const { port: base, vol } = memfsPort();
    const port = nonRootRm(base, vol);
    const provider = await createEphemeralProvider({ root: ROOT, fs: port });
    onTestFinished(() => provider.close());
    const lease = await provider.acquire({ key: "k" });
    const dir = lease.path as string;
    vol.mkdirSync(path.join(dir, "ro", "inner"), { recursive: true });
    vol.writeFileSync(path.join(dir, "ro", "inner", "f"), "f");
    vol.mkdirSync(path.join(dir, "sealed", "deeper"), { recursive: true });
    vol.chmodSync(path.join(dir, "ro", "inner"), 0o500);
    vol.chmodSync(path.join(dir, "ro"), 0o500);
    vol.chmodSync(path.join(dir, "sealed"), 0o000);
    // The emulation bites: as it stands, this tree cannot be removed.
    await expect(port.promises.rm(dir, { recursive: true, force: true })).rejects.toMatchObject({ code: "EACCES" });

    const result = await provider.release(lease, "delete");
    expect(result.outcome, String(result.error)).toBe("removed");
    expect((vol.readdirSync(ROOT) as string[]).map(String)).toEqual([".instances"]);
  });

  it("a tree holding a file that stays undeletable is left as trash, not retried forever", async () => {
    const r = await rig();
    const lease = await r.provider.acquire({ key: "k" });
    r.faults.set("unlink", { code: "EPERM" });
    const result = await r.provider.release(lease, "delete");
    expect(result.outcome).toBe("trashed");
    expectWorkspaceError(result.error, "WS_REMOVE_FAILED", "EPERM");
  });

  it("a trash entry that never empties (a writer still at work) ends as trash after three passes, not as a loop", async () => {
    const r = await rig();
    const lease = await r.provider.acquire({ key: "k" });
    let attempts = 0;
    r.faults.set("rmdir", {
      code: "ENOTEMPTY",
      match: (target) => {
        const trash = path.dirname(target) === ROOT && path.basename(target).startsWith(".trash-");
        if (trash) attempts += 1;
        return trash;
      },
    });
    const result = await r.provider.release(lease, "delete");
    expect(result.outcome).toBe("trashed");
    expectWorkspaceError(result.error, "WS_REMOVE_FAILED", "ENOTEMPTY");
    expect(attempts).toBe(3);
    await expectNothingUntracked(r);
  });

  it("a lease directory that turns out to be a planted link is refused and nothing is written through it", async () => {
    const { port: base, vol } = memfsPort();
    vol.mkdirSync("/elsewhere", { recursive: true });
    const port: FsPort = {
      ...base,
      async createLeaseDir(root, name) {
        await base.promises.mkdir(root, { recursive: true });
        vol.symlinkSync("/elsewhere", path.join(root, name));
      },
    };
    const provider = await createEphemeralProvider({ root: ROOT, fs: port });
    onTestFinished(() => provider.close());
    const error = await rejection(provider.acquire({ key: "k" }));
    expect(isWorkspaceError(error, "WS_CREATE_FAILED"), String(error)).toBe(true);
    expect(vol.readdirSync("/elsewhere")).toEqual([]);
    // Not ours to delete either: the link stays where it was planted.
    const [planted] = vol.readdirSync(ROOT).filter((name) => !String(name).startsWith("."));
    expect(vol.lstatSync(path.join(ROOT, String(planted))).isSymbolicLink()).toBe(true);
    expect(await provider.list()).toEqual([]);
  });
});
