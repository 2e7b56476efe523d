import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { cpSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import { cp, lstat, mkdir, readFile, readdir, rename, rm, symlink, utimes, writeFile } from "node:fs/promises";
import * as path from "node:path";
import lockfile from "proper-lockfile";
import { describe, expect, it, onTestFinished } from "vitest";
import { isWorkspaceError } from "../src/errors.ts";
import { type FsPort, nodeFsPort } from "../src/fs-port.ts";
import { createLivenessProbe, registerInstance } from "../src/instance.ts";
import { MARKER_NAME, buildMarker } from "../src/marker.ts";
import { type EphemeralProvider, type EphemeralProviderOptions, createEphemeralProvider } from "../src/providers/ephemeral.ts";
import { type LedgerClaim, type SweepEntry, type SweepProgress, sweep } from "../src/sweep.ts";
import type { WorkspaceLease } from "../src/types.ts";
import { listTree, procStatField, tempDir } from "./helpers.ts";

async function newRoot(): Promise<{ base: string; root: string }> {
  const base = await tempDir();
  return { base, root: path.join(base, "root") };
}

async function open(root: string, options: Omit<EphemeralProviderOptions, "root"> = {}): Promise<EphemeralProvider> {
  const provider = await createEphemeralProvider({ seed: "none", ...options, root });
  onTestFinished(() => provider.close());
  return provider;
}

async function acquireMany(provider: EphemeralProvider, n: number, prefix = "k"): Promise<WorkspaceLease[]> {
  const leases: WorkspaceLease[] = [];
  for (let i = 0; i < n; i++) leases.push(await provider.acquire({ key: `${prefix}-${i}` }));
  return leases;
}

/** A provider that held leases and then closed without releasing them: its leases are orphans. */
async function orphans(root: string, n: number): Promise<{ id: string; leases: WorkspaceLease[] }> {
  const provider = await open(root);
  const leases = await acquireMany(provider, n, "orphan");
  await provider.close();
  return { id: provider.instance.id, leases };
}

function byPath(entries: SweepEntry[]): Map<string, SweepEntry> {
  return new Map(entries.map((entry) => [entry.path, entry]));
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );
}

/** The pid of a child process that has exited: a process proven gone (if the pid is reused, the start time differs). */
function exitedPid(): number {
  const { pid, status } = spawnSync(process.execPath, ["-e", ""]);
  expect(status).toBe(0);
  return pid;
}

/** A marker as the provider would write it for `dir`, owned by `instanceId`. */
async function forgedMarker(dir: string, instanceId: string): Promise<string> {
  const st = await lstat(dir, { bigint: true });
  const identity = { dev: st.dev.toString(), ino: st.ino.toString() };
  return JSON.stringify(buildMarker({ leaseId: randomUUID(), instanceId, dir, key: "forged", agentId: "main", createdAt: Date.now(), identity }));
}

function trashName(instanceId: string): string {
  return `.trash-${instanceId}-abcdefghij`;
}

describe("sweep: leases by owner liveness", () => {
  it("reclaims the leases of a closed provider and keeps those of a live one in the same root", async () => {
    const { root } = await newRoot();
    const dead = await orphans(root, 3);
    const live = await open(root);
    const liveLeases = await acquireMany(live, 2, "live");
    const sweeper = await open(root);

    const result = await sweep({ root, instance: sweeper.instance });
    const entries = byPath(result.entries);
    for (const lease of dead.leases) {
      expect(entries.get(lease.path as string)).toMatchObject({ kind: "lease", action: "reclaim", outcome: "removed", instanceId: dead.id, leaseId: lease.leaseId });
      expect(existsSync(lease.path as string)).toBe(false);
    }
    for (const lease of liveLeases) {
      expect(entries.get(lease.path as string)).toMatchObject({ kind: "lease", action: "keep", reason: "owner instance is alive", instanceId: live.instance.id });
      expect(existsSync(path.join(lease.path as string, MARKER_NAME))).toBe(true);
    }
    expect(result).toMatchObject({ reclaimed: 3, kept: 2, reported: 0, failed: 0, dryRun: false });
    expect((await readdir(root)).filter((name) => name.startsWith(".trash-"))).toEqual([]);
    expect((await live.list()).length).toBe(2);
  });

  it("two live providers sharing a root sweep each other and reclaim nothing", async () => {
    const { root } = await newRoot();
    const a = await open(root);
    const b = await open(root);
    const leasesA = await acquireMany(a, 2, "a");
    const leasesB = await acquireMany(b, 2, "b");
    const before = listTree(root);

    const fromA = await sweep({ root, instance: a.instance });
    const fromB = await sweep({ root, instance: b.instance });
    for (const result of [fromA, fromB]) {
      expect(result.reclaimed).toBe(0);
      expect(result.kept).toBe(4);
      expect(result.entries.every((entry) => entry.action === "keep")).toBe(true);
    }
    for (const lease of [...leasesA, ...leasesB]) expect(existsSync(lease.path as string)).toBe(true);
    expect(listTree(root)).toEqual(before);
  });
});

describe("sweep: what is not provably ours is reported, never deleted", () => {
  it("reports strangers and flawed markers and leaves them and the canary intact", async () => {
    const { base, root } = await newRoot();
    const canary = path.join(base, "canary");
    await mkdir(canary);
    await writeFile(path.join(canary, "secret.txt"), "canary bytes");
    // A dead owner for the marker-bearing strangers: if a check were missing they would be reclaimed.
    const dead = await orphans(root, 2);
    const [source, moved] = dead.leases as [WorkspaceLease, WorkspaceLease];
    const sweeper = await open(root);

    const stranger = (name: string): string => path.join(root, name);
    await mkdir(stranger("unmarked"));
    await writeFile(path.join(stranger("unmarked"), "f"), "f");
    await writeFile(stranger("regular-file"), "file");
    await symlink(canary, stranger("link-to-canary"));
    await mkdir(stranger(".trash-zz"));
    await writeFile(path.join(stranger(".trash-zz"), "f"), "f");
    await mkdir(stranger("bad-json"));
    await writeFile(path.join(stranger("bad-json"), MARKER_NAME), "{not json");
    // Each of these carries a marker that would be valid for its directory (right name, device,
    // inode, a dead owner) but for one flaw, so only the check for that flaw keeps it alive.
    await mkdir(stranger("oversize"));
    await writeFile(path.join(stranger("oversize"), MARKER_NAME), (await forgedMarker(stranger("oversize"), dead.id)) + " ".repeat(9 * 1024));
    await mkdir(stranger("marker-link"));
    await writeFile(path.join(base, "outside-marker.json"), await forgedMarker(stranger("marker-link"), dead.id));
    await symlink(path.join(base, "outside-marker.json"), path.join(stranger("marker-link"), MARKER_NAME));
    await mkdir(stranger("schema-mismatch"));
    const extra = { ...(JSON.parse(await forgedMarker(stranger("schema-mismatch"), dead.id)) as object), extra: true };
    await writeFile(path.join(stranger("schema-mismatch"), MARKER_NAME), JSON.stringify(extra));
    // The control: the same forgery without a flaw is taken for a dead lease and reclaimed.
    await mkdir(stranger("control"));
    await writeFile(path.join(stranger("control"), MARKER_NAME), await forgedMarker(stranger("control"), dead.id));
    // Copied: a new directory with the name the marker names, but another device/inode.
    const copiedAt = source.path as string;
    await rename(copiedAt, path.join(base, "original-of-copy"));
    await mkdir(copiedAt);
    await cp(path.join(base, "original-of-copy", MARKER_NAME), path.join(copiedAt, MARKER_NAME));
    // Moved: the original directory (same inode) under another name.
    const movedTo = stranger("renamed-lease");
    await rename(moved.path as string, movedTo);

    const before = listTree(root);
    const canaryBefore = await readFile(path.join(canary, "secret.txt"), "utf8");
    const result = await sweep({ root, instance: sweeper.instance });
    const entries = byPath(result.entries);
    const expectations: [string, RegExp][] = [
      [stranger("unmarked"), /no marker/],
      [stranger("regular-file"), /not a directory/],
      [stranger("link-to-canary"), /symlink/],
      [stranger(".trash-zz"), /trash-like name/],
      [stranger("bad-json"), /not JSON/],
      [stranger("oversize"), /larger than 8192/],
      [stranger("marker-link"), /symlink/],
      [stranger("schema-mismatch"), /schema/],
      [copiedAt, /another directory/],
      [movedTo, /another directory/],
    ];
    for (const [entryPath, reason] of expectations) {
      const entry = entries.get(entryPath);
      expect(entry, entryPath).toBeDefined();
      expect(entry?.action, entryPath).toBe("report");
      expect(entry?.kind, entryPath).toBe("unknown");
      expect(entry?.reason, entryPath).toMatch(reason);
      expect(entry?.outcome, entryPath).toBeUndefined();
    }
    expect(entries.get(stranger("control"))).toMatchObject({ kind: "lease", action: "reclaim", outcome: "removed", instanceId: dead.id });
    expect(result).toMatchObject({ reported: expectations.length, reclaimed: 1, failed: 0 });
    expect(listTree(root)).toEqual(before.filter((rel) => rel.split(path.sep)[0] !== "control"));
    expect(await readFile(path.join(canary, "secret.txt"), "utf8")).toBe(canaryBefore);
    expect(listTree(canary)).toEqual(["secret.txt"]);
    // The copied and the moved lease still name their (dead) owner in the report.
    expect(result.entries.filter((entry) => entry.action === "report" && entry.instanceId === dead.id).map((entry) => entry.path).sort()).toEqual([copiedAt, movedTo].sort());
  });
});

/** The claim a ledger holds for `lease` (its identity as created), owned by `instanceId`. */
function claimOf(lease: WorkspaceLease, instanceId: string): [string, LedgerClaim] {
  const identity = lease.identity as { dev: string; ino: string };
  return [lease.path as string, { leaseId: lease.leaseId, instanceId, key: "k", createdAt: 0, dev: identity.dev, ino: identity.ino }];
}

describe("sweep: the ledger as proof", () => {
  it("an unmarked lease is reclaimed when a claim matches its path, device and inode and its owner is dead; kept while alive; reported on a mismatch or without a claim", async () => {
    const { base, root } = await newRoot();
    const dead = await orphans(root, 4);
    const [wiped, copiedMarker, swapped, unclaimed] = dead.leases as [WorkspaceLease, WorkspaceLease, WorkspaceLease, WorkspaceLease];
    const live = await open(root);
    const [liveWiped] = await acquireMany(live, 1, "live");
    const sweeper = await open(root);

    for (const lease of [wiped, swapped, unclaimed, liveWiped as WorkspaceLease]) await rm(path.join(lease.path as string, MARKER_NAME));
    // A marker copied in from another lease directory: invalid here, but the ledger still knows this directory.
    await rm(path.join(copiedMarker.path as string, MARKER_NAME));
    await mkdir(path.join(base, "elsewhere"));
    await writeFile(path.join(copiedMarker.path as string, MARKER_NAME), await forgedMarker(path.join(base, "elsewhere"), dead.id));
    // Same path, another directory.
    await mkdir(path.join(base, "stand-in"));
    await rm(swapped.path as string, { recursive: true });
    await rename(path.join(base, "stand-in"), swapped.path as string);
    const claims = new Map([claimOf(wiped, dead.id), claimOf(copiedMarker, dead.id), claimOf(swapped, dead.id), claimOf(liveWiped as WorkspaceLease, live.instance.id)]);

    const result = await sweep({ root, instance: sweeper.instance, claims });
    const entries = byPath(result.entries);
    for (const lease of [wiped, copiedMarker]) {
      expect(entries.get(lease.path as string)).toMatchObject({ kind: "lease", action: "reclaim", proof: "ledger", outcome: "removed", leaseId: lease.leaseId, instanceId: dead.id });
      expect(existsSync(lease.path as string)).toBe(false);
    }
    expect(entries.get(liveWiped?.path as string)).toMatchObject({ kind: "lease", action: "keep", proof: "ledger" });
    expect(entries.get(swapped.path as string)).toMatchObject({ kind: "unknown", action: "report" });
    expect(entries.get(swapped.path as string)?.reason).toContain("device/inode differ");
    expect(entries.get(unclaimed.path as string)).toMatchObject({ kind: "unknown", action: "report", reason: "no marker" });
    for (const lease of [swapped, unclaimed, liveWiped as WorkspaceLease]) expect(existsSync(lease.path as string)).toBe(true);
    expect(result).toMatchObject({ reclaimed: 2, kept: 1, reported: 2, failed: 0 });
  });

  it("a claimed directory swapped for another after the scan is refused, not removed", async () => {
    const { base, root } = await newRoot();
    const dead = await orphans(root, 1);
    const [lease] = dead.leases as [WorkspaceLease];
    const sweeper = await open(root);
    await rm(path.join(lease.path as string, MARKER_NAME));
    await mkdir(path.join(base, "stand-in"));
    const result = await sweep({
      root,
      instance: sweeper.instance,
      claims: new Map([claimOf(lease, dead.id)]),
      onProgress: (p) => {
        if (p.phase !== "scan") return;
        rmSync(lease.path as string, { recursive: true });
        renameSync(path.join(base, "stand-in"), lease.path as string);
      },
    });
    expect(result.entries[0]).toMatchObject({ action: "reclaim", proof: "ledger", outcome: "refused" });
    expect(existsSync(lease.path as string)).toBe(true);
    expect(result).toMatchObject({ reclaimed: 0, failed: 1 });
  });
});

describe("sweep: trash entries", () => {
  it("reclaims dead and own idle trash, keeps a live instance's trash and own busy trash", async () => {
    const { root } = await newRoot();
    const dead = await orphans(root, 0);
    const liveOther = await open(root);
    const self = await open(root);
    const deadTrash = path.join(root, trashName(dead.id));
    const liveTrash = path.join(root, trashName(liveOther.instance.id));
    const ownIdle = path.join(root, trashName(self.instance.id));
    const ownBusy = path.join(root, `.trash-${self.instance.id}-busybusy00`);
    for (const trash of [deadTrash, liveTrash, ownIdle, ownBusy]) {
      await mkdir(path.join(trash, "sub"), { recursive: true });
      await writeFile(path.join(trash, "sub", "f"), "f");
    }
    self.instance.busyTrash.add(ownBusy);

    const result = await sweep({ root, instance: self.instance });
    const entries = byPath(result.entries);
    expect(entries.get(deadTrash)).toMatchObject({ kind: "trash", action: "reclaim", outcome: "removed", instanceId: dead.id });
    expect(entries.get(liveTrash)).toMatchObject({ kind: "trash", action: "keep", instanceId: liveOther.instance.id });
    expect(entries.get(ownIdle)).toMatchObject({ kind: "trash", action: "reclaim", outcome: "removed", instanceId: self.instance.id });
    expect(entries.get(ownBusy)).toMatchObject({ kind: "trash", action: "keep", instanceId: self.instance.id });
    expect(existsSync(deadTrash)).toBe(false);
    expect(existsSync(ownIdle)).toBe(false);
    expect(existsSync(path.join(liveTrash, "sub", "f"))).toBe(true);
    expect(existsSync(path.join(ownBusy, "sub", "f"))).toBe(true);
    expect(result).toMatchObject({ reclaimed: 2, kept: 2 });
  });

  it("without an instance of its own, treats every trash owner by liveness alone", async () => {
    const { root } = await newRoot();
    const dead = await orphans(root, 1);
    const live = await open(root);
    await mkdir(path.join(root, trashName(dead.id)));
    await mkdir(path.join(root, trashName(live.instance.id)));
    const result = await sweep({ root });
    expect(result.reclaimed).toBe(2);
    expect(result.kept).toBe(1);
    expect(existsSync(path.join(root, trashName(dead.id)))).toBe(false);
    expect(existsSync(path.join(root, trashName(live.instance.id)))).toBe(true);
  });
});

describe("sweep: dry run", () => {
  it("plans without deleting, and a real sweep right after reclaims exactly the plan", async () => {
    const { root } = await newRoot();
    const dead = await orphans(root, 4);
    const live = await open(root);
    await acquireMany(live, 2, "live");
    await mkdir(path.join(root, trashName(dead.id)));
    await mkdir(path.join(root, "stranger"));
    const before = listTree(root);

    const plan = await sweep({ root, instance: live.instance, dryRun: true });
    expect(plan.dryRun).toBe(true);
    expect(listTree(root)).toEqual(before);
    const planned = plan.entries.filter((entry) => entry.action === "reclaim");
    expect(planned.length).toBe(5);
    expect(planned.every((entry) => entry.outcome === "planned")).toBe(true);
    expect(plan.entries.filter((entry) => entry.action !== "reclaim").every((entry) => entry.outcome === undefined)).toBe(true);
    expect(plan.reclaimed).toBe(5);
    expect(plan.forgottenInstances).toBe(0);

    const real = await sweep({ root, instance: live.instance });
    const removed = real.entries.filter((entry) => entry.outcome === "removed").map((entry) => entry.path);
    expect(new Set(removed)).toEqual(new Set(planned.map((entry) => entry.path)));
    for (const entryPath of removed) expect(existsSync(entryPath)).toBe(false);
    expect(existsSync(path.join(root, "stranger"))).toBe(true);
  });
});

describe("sweep: one collector at a time", () => {
  it("rejects with WS_GC_BUSY while someone holds the collector lock, and works once it is released", async () => {
    const { root } = await newRoot();
    const dead = await orphans(root, 1);
    const release = await lockfile.lock(path.join(root, ".collector"), { lockfilePath: path.join(root, ".collector.lock"), realpath: false });
    let held = true;
    onTestFinished(async () => {
      if (held) await release();
    });

    const error = await rejection(sweep({ root }));
    expect(isWorkspaceError(error, "WS_GC_BUSY"), String(error)).toBe(true);
    expect(existsSync(dead.leases[0]?.path as string)).toBe(true);

    await release();
    held = false;
    const result = await sweep({ root });
    expect(result.reclaimed).toBe(1);
    expect(existsSync(dead.leases[0]?.path as string)).toBe(false);
    expect(existsSync(path.join(root, ".collector.lock"))).toBe(false);
  });
});

describe("sweep: bounded concurrency and progress", () => {
  it("never runs more than `concurrency` lstat calls at once, and reports progress for every entry", async () => {
    const { root } = await newRoot();
    const dead = await orphans(root, 40);
    const sweeper = await open(root);

    let inFlight = 0;
    let maxInFlight = 0;
    let calls = 0;
    const promises = new Proxy(nodeFsPort.promises, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== "lstat" || typeof value !== "function") return value;
        return async (...args: unknown[]) => {
          calls += 1;
          inFlight += 1;
          maxInFlight = Math.max(maxInFlight, inFlight);
          try {
            // A short pause inside the counted window so that overlapping calls are observable.
            await new Promise((resolve) => setTimeout(resolve, 2));
            return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          } finally {
            inFlight -= 1;
          }
        };
      },
    });
    const counting: FsPort = { ...nodeFsPort, promises };
    const progress: SweepProgress[] = [];

    const result = await sweep({ root, instance: sweeper.instance, fs: counting, concurrency: 3, onProgress: (p) => progress.push(p) });
    expect(result.reclaimed).toBe(40);
    for (const lease of dead.leases) expect(existsSync(lease.path as string)).toBe(false);
    expect(calls).toBeGreaterThan(40);
    expect(maxInFlight).toBeLessThanOrEqual(3);
    expect(maxInFlight).toBeGreaterThan(1);

    for (const phase of ["scan", "reclaim"] as const) {
      const events = progress.filter((p) => p.phase === phase);
      expect(events.length, phase).toBe(40);
      expect(events.map((p) => p.done)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      expect(events.every((p) => p.total === 40)).toBe(true);
      expect(new Set(events.map((p) => p.entry.path))).toEqual(new Set(dead.leases.map((lease) => lease.path)));
    }
  });

  it("rejects a concurrency outside 1–64 with WS_INVALID_OPTIONS", async () => {
    const { root } = await newRoot();
    await mkdir(root, { mode: 0o700 });
    for (const concurrency of [0, -1, 65, 2.5]) {
      const error = await rejection(sweep({ root, concurrency }));
      expect(isWorkspaceError(error, "WS_INVALID_OPTIONS"), `${concurrency}: ${String(error)}`).toBe(true);
    }
  });
});

describe("sweep: instance records", () => {
  it("forgets a crashed instance's records once its leases are reclaimed, and keeps a live instance's", async () => {
    const { root } = await newRoot();
    const crashed = await open(root);
    const leases = await acquireMany(crashed, 2, "crashed");
    const instances = path.join(root, ".instances");
    const infoFile = path.join(instances, `${crashed.instance.id}.json`);
    const lockDir = path.join(instances, `${crashed.instance.id}.lock`);
    const info = await readFile(infoFile, "utf8");
    await crashed.close();
    // What a crash leaves: the record of a process that is gone, and a lock nobody refreshes any more (10 minutes old).
    await writeFile(infoFile, JSON.stringify({ ...(JSON.parse(info) as object), pid: exitedPid() }), { mode: 0o600 });
    await mkdir(lockDir);
    const old = new Date(Date.now() - 10 * 60_000);
    await utimes(lockDir, old, old);

    const live = await open(root);
    const liveRecords = [path.join(instances, `${live.instance.id}.json`), path.join(instances, `${live.instance.id}.lock`)];
    for (const record of liveRecords) expect(existsSync(record)).toBe(true);

    const result = await sweep({ root, instance: live.instance });
    expect(result.reclaimed).toBe(2);
    for (const lease of leases) expect(existsSync(lease.path as string)).toBe(false);
    expect(result.forgottenInstances).toBeGreaterThanOrEqual(1);
    expect(existsSync(infoFile)).toBe(false);
    expect(existsSync(lockDir)).toBe(false);
    for (const record of liveRecords) expect(existsSync(record)).toBe(true);
  });
});

describe("sweep: the root itself", () => {
  it("a missing root is an empty sweep", async () => {
    const { root } = await newRoot();
    const result = await sweep({ root });
    expect(result).toMatchObject({ entries: [], reclaimed: 0, kept: 0, reported: 0, failed: 0, forgottenInstances: 0 });
    expect(existsSync(root)).toBe(false);
  });

  it("refuses a root that is a symlink, even to a directory holding orphans", async () => {
    const { base, root } = await newRoot();
    const real = path.join(base, "real-root");
    const dead = await orphans(real, 1);
    await symlink(real, root);
    const error = await rejection(sweep({ root }));
    expect(isWorkspaceError(error, "WS_ROOT_UNSAFE"), String(error)).toBe(true);
    expect(existsSync(dead.leases[0]?.path as string)).toBe(true);
    expect((await lstat(root)).isSymbolicLink()).toBe(true);
  });
});

describe("sweep: changes between the scan and the reclaim", () => {
  it("a lease whose marker disappears after the scan is not deleted, and not counted as reclaimed", async () => {
    const { root } = await newRoot();
    const dead = await orphans(root, 2);
    const [touched, untouched] = dead.leases as [WorkspaceLease, WorkspaceLease];
    const sweeper = await open(root);
    const result = await sweep({
      root,
      instance: sweeper.instance,
      concurrency: 1,
      onProgress: (p) => {
        // The scan phase has decided this entry; take its marker away before the reclaim phase.
        if (p.phase === "scan" && p.entry.path === touched.path) rmSync(path.join(touched.path as string, MARKER_NAME));
      },
    });
    const entries = byPath(result.entries);
    expect(entries.get(touched.path as string)?.action).toBe("reclaim");
    expect(entries.get(touched.path as string)?.outcome).not.toBe("removed");
    expect(entries.get(touched.path as string)?.outcome).not.toBe("gone");
    expect(existsSync(touched.path as string)).toBe(true);
    expect(entries.get(untouched.path as string)?.outcome).toBe("removed");
    expect(result.reclaimed).toBe(1);
    expect(result.failed).toBe(1);
  });

  it("a lease that vanished after the scan is gone, and a lease swapped for a copy after the scan is refused", async () => {
    const { base, root } = await newRoot();
    const dead = await orphans(root, 2);
    const [vanished, swapped] = dead.leases as [WorkspaceLease, WorkspaceLease];
    const sweeper = await open(root);
    const result = await sweep({
      root,
      instance: sweeper.instance,
      concurrency: 1,
      onProgress: (p) => {
        if (p.phase !== "scan") return;
        if (p.entry.path === vanished.path) rmSync(vanished.path as string, { recursive: true });
        if (p.entry.path === swapped.path) {
          // Same name, same marker bytes, another inode: someone's copy, not our directory.
          renameSync(swapped.path as string, path.join(base, "moved-away"));
          mkdirSync(swapped.path as string);
          cpSync(path.join(base, "moved-away", MARKER_NAME), path.join(swapped.path as string, MARKER_NAME));
          writeFileSync(path.join(swapped.path as string, "theirs.txt"), "theirs");
        }
      },
    });
    const entries = byPath(result.entries);
    expect(entries.get(vanished.path as string)?.outcome).toBe("gone");
    const refused = entries.get(swapped.path as string);
    expect(refused?.outcome).toBe("refused");
    expect(isWorkspaceError(refused?.error, "WS_IDENTITY_CHANGED"), String(refused?.error)).toBe(true);
    expect(existsSync(path.join(swapped.path as string, "theirs.txt"))).toBe(true);
    expect(result.reclaimed).toBe(1);
    expect(result.failed).toBe(1);
  });
});

describe("liveness: what counts as alive", () => {
  /** A fresh lock directory for `id`, as a running instance keeps it. */
  async function freshLock(root: string, id: string): Promise<void> {
    await mkdir(path.join(root, ".instances", `${id}.lock`), { recursive: true });
  }

  /** A lock directory for `id` that nobody has refreshed for 10 minutes. */
  async function staleLock(root: string, id: string): Promise<void> {
    await freshLock(root, id);
    const old = new Date(Date.now() - 10 * 60_000);
    await utimes(path.join(root, ".instances", `${id}.lock`), old, old);
  }

  it("anything unclear is alive; a bad id or a missing lock is dead", async () => {
    const { root } = await newRoot();
    const live = await open(root);
    const probe = createLivenessProbe({ root });
    const instances = path.join(root, ".instances");
    const info = JSON.parse(await readFile(path.join(instances, `${live.instance.id}.json`), "utf8")) as Record<string, unknown>;

    expect(await probe.isAlive(live.instance.id)).toBe(true);
    expect(await probe.isAlive("NOT/AN-ID")).toBe(false);
    expect(await probe.isAlive(randomUUID())).toBe(false);

    const noInfo = randomUUID();
    await freshLock(root, noInfo);
    expect(await probe.isAlive(noInfo)).toBe(true);

    const otherHost = randomUUID();
    await freshLock(root, otherHost);
    await writeFile(path.join(instances, `${otherHost}.json`), JSON.stringify({ ...info, id: otherHost, host: "another-host", pid: 999_999_999 }));
    expect(await probe.isAlive(otherHost)).toBe(true);

    const sameHostDeadPid = randomUUID();
    await freshLock(root, sameHostDeadPid);
    await writeFile(path.join(instances, `${sameHostDeadPid}.json`), JSON.stringify({ ...info, id: sameHostDeadPid, pid: 999_999_999 }));
    expect(await probe.isAlive(sameHostDeadPid)).toBe(false);

    const infoIsDir = randomUUID();
    await freshLock(root, infoIsDir);
    await mkdir(path.join(instances, `${infoIsDir}.json`));
    expect(await probe.isAlive(infoIsDir)).toBe(true);

    const oversize = randomUUID();
    await freshLock(root, oversize);
    await writeFile(path.join(instances, `${oversize}.json`), JSON.stringify({ ...info, id: oversize, pid: 999_999_999 }) + " ".repeat(5000));
    expect(await probe.isAlive(oversize)).toBe(true);

    const garbage = randomUUID();
    await freshLock(root, garbage);
    await writeFile(path.join(instances, `${garbage}.json`), "{garbage");
    expect(await probe.isAlive(garbage)).toBe(true);

    const stale = randomUUID();
    await freshLock(root, stale);
    const old = new Date(Date.now() - 10 * 60_000);
    await utimes(path.join(instances, `${stale}.lock`), old, old);
    expect(await probe.isAlive(stale)).toBe(false);
  });

  /** This test process's record, with and without the start time (as records written before it existed). */
  async function ownRecords(root: string, instanceId: string): Promise<{ written: Record<string, unknown>; current: Record<string, unknown>; legacy: Record<string, unknown> }> {
    const written = JSON.parse(await readFile(path.join(root, ".instances", `${instanceId}.json`), "utf8")) as Record<string, unknown>;
    const legacy = Object.fromEntries(Object.entries(written).filter(([field]) => field !== "startTicks"));
    const startTicks = Number(await procStatField(process.pid, 22));
    expect(startTicks).toBeGreaterThan(0);
    return { written, current: { ...legacy, startTicks }, legacy };
  }

  it("regression: a stalled live gateway was judged dead. A stale lock is death only when the process is proven gone", async () => {
    const { root } = await newRoot();
    const live = await open(root);
    const { written, current, legacy } = await ownRecords(root, live.instance.id);
    const probe = createLivenessProbe({ root, staleMs: 2000 });
    async function staleInstance(record: Record<string, unknown>): Promise<string> {
      const id = randomUUID();
      await staleLock(root, id);
      await writeFile(path.join(root, ".instances", `${id}.json`), JSON.stringify({ ...record, id }));
      return id;
    }

    // Same host, boot and pid namespace; the pid exists with the recorded start time: alive, however stale.
    expect(await probe.isAlive(await staleInstance(current))).toBe(true);
    // A record written before start times were recorded: a pid that exists on this machine is alive.
    expect(await probe.isAlive(await staleInstance(legacy))).toBe(true);
    // Proven gone: the pid no longer exists, with or without a start time.
    expect(await probe.isAlive(await staleInstance({ ...current, pid: exitedPid() }))).toBe(false);
    expect(await probe.isAlive(await staleInstance({ ...legacy, pid: exitedPid() }))).toBe(false);
    // Not comparable (another host, or no boot id): staleness alone decides, as before.
    expect(await probe.isAlive(await staleInstance({ ...current, host: "another-host" }))).toBe(false);
    expect(await probe.isAlive(await staleInstance({ ...current, bootId: null }))).toBe(false);
    // registerInstance records the start time of its process.
    expect(written).toEqual(current);
  });

  it("a recycled pid (the pid exists, with another start time) is dead, whether its lock is stale or fresh", async () => {
    const { root } = await newRoot();
    const live = await open(root);
    const { current } = await ownRecords(root, live.instance.id);
    const recycled = { ...current, startTicks: (current.startTicks as number) + 1 };
    const probe = createLivenessProbe({ root, staleMs: 2000 });

    const fresh = randomUUID();
    await freshLock(root, fresh);
    await writeFile(path.join(root, ".instances", `${fresh}.json`), JSON.stringify({ ...recycled, id: fresh }));
    expect(await probe.isAlive(fresh)).toBe(false);

    const stale = randomUUID();
    await staleLock(root, stale);
    await writeFile(path.join(root, ".instances", `${stale}.json`), JSON.stringify({ ...recycled, id: stale }));
    expect(await probe.isAlive(stale)).toBe(false);

    // Its leases are reclaimed; the live instance's (same pid, true start time) are kept.
    const lease = await live.acquire({ key: "kept" });
    const orphanDir = path.join(root, "recycled-orphan");
    await mkdir(orphanDir, { mode: 0o700 });
    await writeFile(path.join(orphanDir, MARKER_NAME), await forgedMarker(orphanDir, fresh));
    const result = await sweep({ root, staleMs: 2000 });
    expect(byPath(result.entries).get(orphanDir)).toMatchObject({ action: "reclaim", outcome: "removed", reason: "owner instance is dead" });
    expect(byPath(result.entries).get(lease.path as string)).toMatchObject({ action: "keep" });
    expect(existsSync(lease.path as string)).toBe(true);
  });

  it("a zombie (exited, not yet reaped by its parent) is dead, though its pid and start time still answer", async () => {
    const { root } = await newRoot();
    const live = await open(root);
    const { current } = await ownRecords(root, live.instance.id);
    // sh starts a short sleep in the background, then becomes a long `sleep`, which never reaps it.
    const parent = spawn("sh", ["-c", "sleep 0.5 & echo $!; exec sleep 60"], { stdio: ["ignore", "pipe", "inherit"] });
    onTestFinished(() => {
      if (parent.exitCode === null && parent.signalCode === null && parent.pid !== undefined) process.kill(parent.pid, "SIGKILL");
    });
    const [line] = (await once(parent.stdout, "data")) as [Buffer];
    const zombie = Number.parseInt(line.toString(), 10);
    const deadline = Date.now() + 10_000;
    while ((await procStatField(zombie, 3)) !== "Z" && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
    expect(await procStatField(zombie, 3)).toBe("Z");
    const record = { ...current, pid: zombie, startTicks: Number(await procStatField(zombie, 22)) };
    const probe = createLivenessProbe({ root, staleMs: 2000 });

    for (const lock of [staleLock, freshLock]) {
      const id = randomUUID();
      await lock(root, id);
      await writeFile(path.join(root, ".instances", `${id}.json`), JSON.stringify({ ...record, id }));
      expect(await probe.isAlive(id), lock.name).toBe(false);
    }
  });

  it("a lock that cannot be checked counts as alive", async () => {
    const { root } = await newRoot();
    await mkdir(root, { mode: 0o700 });
    await writeFile(path.join(root, ".instances"), "a file where the directory should be");
    const probe = createLivenessProbe({ root });
    expect(await probe.isAlive(randomUUID())).toBe(true);
  });

  it("validates the timing options", async () => {
    const { root } = await newRoot();
    for (const liveness of [{ staleMs: 1999 }, { staleMs: 2000.5 }, { staleMs: 10_000, heartbeatMs: 999 }, { staleMs: 10_000, heartbeatMs: 5001 }]) {
      let caught: unknown;
      try {
        createLivenessProbe({ root, ...liveness });
      } catch (error) {
        caught = error;
      }
      expect(isWorkspaceError(caught, "WS_INVALID_OPTIONS"), `${JSON.stringify(liveness)}: ${String(caught)}`).toBe(true);
      const viaProvider = await rejection(createEphemeralProvider({ root, liveness }));
      expect(isWorkspaceError(viaProvider, "WS_INVALID_OPTIONS"), JSON.stringify(liveness)).toBe(true);
    }
  });

  it("an instance whose lock is taken away is told so, and still closes cleanly", async () => {
    const { root } = await newRoot();
    await mkdir(root, { mode: 0o700 });
    let compromised: ((error: unknown) => void) | undefined;
    const told = new Promise<unknown>((resolve) => {
      compromised = resolve;
    });
    const instance = await registerInstance({ root, staleMs: 2000, heartbeatMs: 1000, onCompromised: (error) => compromised?.(error) });
    onTestFinished(() => instance.close());
    await rm(path.join(root, ".instances", `${instance.id}.lock`), { recursive: true });
    // Hang detection only: the heartbeat notices within about a second.
    const error = await Promise.race([told, new Promise((resolve) => setTimeout(() => resolve("timeout"), 15_000))]);
    expect(isWorkspaceError(error, "WS_INSTANCE_LOCK_FAILED"), String(error)).toBe(true);
    await instance.close();
    await instance.close();
    expect(instance.closed).toBe(true);
    expect(existsSync(path.join(root, ".instances", `${instance.id}.json`))).toBe(false);
  });
});

describe("sweep: odd but harmless roots", () => {
  it("a root with no .instances directory and a marker that is a directory", async () => {
    const { root } = await newRoot();
    await mkdir(path.join(root, "marker-is-dir", MARKER_NAME), { recursive: true, mode: 0o700 });
    const result = await sweep({ root });
    expect(result.entries).toEqual([expect.objectContaining({ name: "marker-is-dir", action: "report", reason: "marker is not a regular file" })]);
    expect(result.forgottenInstances).toBe(0);
    expect(existsSync(path.join(root, "marker-is-dir", MARKER_NAME))).toBe(true);
  });
});
