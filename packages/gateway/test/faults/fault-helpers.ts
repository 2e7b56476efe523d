/**
 * Shared pieces of the fault suite: a seeded PRNG, a canary tree outside the ephemeral root with
 * a byte-for-byte snapshot, symlinks planted from a workspace into the canary, and polling for a
 * session's live lease over RPC.
 */
import { type SpawnOptions, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { link, lstat, mkdir, readFile, readdir, readlink, symlink, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { MARKER_NAME, leaseDirName } from "@ocgw/workspace";
import type { LeaseRecord } from "../../src/index.ts";
import { onTestFinished } from "vitest";
import { type TestClient, withTimeout } from "../protocol/helpers.ts";
import { call, waitUntil } from "../gateway/lifecycle-harness.ts";

/** mulberry32: a tiny deterministic PRNG; `next()` is uniform in [0, 1). */
export function prng(seed: number): { next(): number; int(min: number, max: number): number; pick<T>(items: readonly T[]): T } {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: (items) => items[Math.floor(next() * items.length)] as (typeof items)[number],
  };
}

export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** A pattern for the lease directory of a canonical key, any random part: `<root>/<slug>-<hash>-<random>`. */
export function leaseDirPattern(root: string, canonicalKey: string): string {
  const name = leaseDirName(canonicalKey);
  return `^${escapeRegExp(root)}/${escapeRegExp(name.slice(0, -12))}[a-z0-9]{12}`;
}

/** Creates a canary tree at `dir`: files at two depths, one read-only, bytes derived from `seed`. */
export async function makeCanary(dir: string, seed: number): Promise<void> {
  await mkdir(path.join(dir, "sub", "deep"), { recursive: true });
  await writeFile(path.join(dir, "a.txt"), `canary ${seed}\n`);
  await writeFile(path.join(dir, "sub", "b.bin"), createHash("sha512").update(`seed ${seed}`).digest());
  await writeFile(path.join(dir, "sub", "deep", "c.txt"), "deep canary\n".repeat(50));
  await writeFile(path.join(dir, "read-only.txt"), "do not touch\n", { mode: 0o400 });
}

/**
 * Every entry of a tree with its type, mode, owner, mtime, size, link count and content hash (or
 * link target), sorted. Equal snapshots: nothing in the tree was written, created, removed or
 * even re-created with the same bytes. A missing tree is `["(missing)"]`.
 */
export async function snapshotTree(dir: string): Promise<string[]> {
  const lines: string[] = [];
  async function walk(current: string, rel: string): Promise<void> {
    const st = await lstat(current);
    const meta = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} mtime=${st.mtimeMs}`;
    if (st.isSymbolicLink()) lines.push(`${rel} link ${await readlink(current)}`);
    else if (st.isDirectory()) {
      lines.push(`${rel} dir ${meta}`);
      for (const name of await readdir(current)) await walk(path.join(current, name), `${rel}/${name}`);
    } else {
      const hash = createHash("sha256").update(await readFile(current)).digest("hex");
      lines.push(`${rel} file ${meta} size=${st.size} nlink=${st.nlink} ${hash}`);
    }
  }
  try {
    await lstat(dir);
  } catch {
    return ["(missing)"];
  }
  await walk(dir, ".");
  return lines.sort();
}

/**
 * Plants, inside a workspace, links into the canary: a directory symlink, a file symlink in a
 * subdirectory, and a hard link to one of its files. A remover that followed any of them (or
 * truncated a file it should only unlink) would change the canary.
 */
export async function plantCanaryLinks(workspace: string, canary: string): Promise<void> {
  await symlink(canary, path.join(workspace, "canary-link"));
  await mkdir(path.join(workspace, "sub"));
  await symlink(path.join(canary, "sub", "b.bin"), path.join(workspace, "sub", "file-link"));
  await link(path.join(canary, "a.txt"), path.join(workspace, "hard-link.txt"));
}

/** Polls `workspaces.list` until the session holds a live lease; returns it. */
export async function waitForLiveLease(client: TestClient, sessionKey: string): Promise<LeaseRecord> {
  let found: LeaseRecord | undefined;
  await waitUntil(async () => {
    const { leases } = await call<{ leases: LeaseRecord[] }>(client, "workspaces.list", { sessionKey, states: ["live"] });
    found = leases[0];
    return found !== undefined;
  }, `a live lease for ${sessionKey}`);
  return found as LeaseRecord;
}

/** The marker of a workspace, raw (for byte-for-byte comparisons); null when missing. */
export async function readMarkerBytes(workspace: string): Promise<string | null> {
  return readFile(path.join(workspace, MARKER_NAME), "utf8").catch(() => null);
}

export interface ChildRun {
  readonly pid: number;
  /** Exit code (null after a signal) and signal, once the child has exited and been reaped. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout(): string;
  stderr(): string;
}

/**
 * Runs `node --conditions=ocgw-source <args>` (sibling packages from their sources) as a child
 * (with `options`: cwd, uid/gid, env); SIGKILLed by pid when the test
 * finishes if it is still running. `exited` settles once its output streams are closed too.
 */
export function spawnNode(args: readonly string[], options: Pick<SpawnOptions, "cwd" | "uid" | "gid" | "env"> = {}): ChildRun {
  const child = spawn(process.execPath, ["--conditions=ocgw-source", ...args], { ...options, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("close", (code, signal) => resolve({ code, signal })));
  void exited.then(() => (done = true));
  onTestFinished(async () => {
    if (done || child.pid === undefined) return;
    try {
      process.kill(child.pid, "SIGKILL");
    } catch {
      // already gone
    }
    await withTimeout(exited, "a child to exit after SIGKILL", 10_000);
  });
  if (child.pid === undefined) throw new Error(`could not spawn ${process.execPath}`);
  return { pid: child.pid, exited, stdout: () => stdout, stderr: () => stderr };
}
