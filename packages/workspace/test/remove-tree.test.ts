import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, rename, symlink, writeFile } from "node:fs/promises";
import * as net from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it, onTestFinished } from "vitest";
import { isWorkspaceError } from "../src/errors.ts";
import { type FsPort, nodeFsPort } from "../src/fs-port.ts";
import { createEphemeralProvider } from "../src/providers/ephemeral.ts";
import { removeTree } from "../src/remove-tree.ts";
import type { ReleaseResult } from "../src/types.ts";
import { NOBODY, deepTree, memfsPort, nobodyCannotRun, removeTestDir, tempDir, watchEventLoop, withFaults } from "./helpers.ts";

const run = promisify(execFile);
const REMOVE_AS = fileURLToPath(new URL("./fixtures/remove-as.ts", import.meta.url));
/** Hang detection only, far above what a linear removal needs even on a loaded machine. */
const HANG_MS = 150_000;
/** As root, the permission case runs as uid 65534; where that uid cannot run this checkout's code, it is skipped (printed). */
const asNobodyBlocked = process.getuid?.() === 0 ? nobodyCannotRun(REMOVE_AS) : null;
if (asNobodyBlocked !== null) console.log(`remove-tree.test.ts: the non-root permission case is skipped: ${asNobodyBlocked}`);
/** fs requests in flight at once: removal deletes a handful at a time, whatever the width (generous). */
const IN_FLIGHT_BOUND = 64;

interface Recording {
  on: boolean;
  /** Every path handed to the port while `on` (both ends of a rename). */
  paths: string[];
}

/** Wraps a port so that it records the paths it is handed. */
function recording(base: FsPort): { port: FsPort; seen: Recording } {
  const seen: Recording = { on: false, paths: [] };
  const promises = new Proxy(base.promises, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (seen.on) {
          const ends = prop === "rename" ? args.slice(0, 2) : args.slice(0, 1);
          for (const end of ends) if (typeof end === "string" || Buffer.isBuffer(end)) seen.paths.push(String(end));
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { port: { ...base, promises }, seen };
}

/** One lease of a fresh provider over `fs`; `release` is what `sessions.delete` ends in. */
async function ephemeral(fs: FsPort): Promise<{ root: string; dir: string; release: () => Promise<ReleaseResult> }> {
  const root = path.join(await tempDir(), "root");
  const p = await createEphemeralProvider({ root, fs, seed: "none" });
  onTestFinished(() => p.close());
  const lease = await p.acquire({ key: "hostile" });
  return { root, dir: lease.path as string, release: () => p.release(lease, "delete") };
}

/** Plants what an agent may leave behind: a FIFO, a socket, links out, unreadable directories, a name that is not UTF-8. */
async function plantHostile(at: string, outside: string, scratch: string): Promise<void> {
  await run("mkfifo", [path.join(at, "fifo")]);
  await plantSocket(path.join(at, "socket"), path.join(scratch, "s.sock"));
  await symlink(outside, path.join(at, "link-out"));
  await symlink(path.join(outside, "precious.txt"), path.join(at, "file-out"));
  await mkdir(path.join(at, "sealed", "inner"), { recursive: true });
  await writeFile(path.join(at, "sealed", "inner", "f"), "f");
  await writeFile(path.join(at, "sealed", "f"), "f");
  await mkdir(path.join(at, "readonly"));
  await writeFile(path.join(at, "readonly", "f"), "f");
  await writeFile(Buffer.concat([Buffer.from(at + path.sep), Buffer.from([0x66, 0xff, 0xfe])]), "not UTF-8");
  await chmod(path.join(at, "sealed", "inner"), 0o500);
  await chmod(path.join(at, "sealed"), 0o000);
  await chmod(path.join(at, "readonly"), 0o500);
  expect((await lstat(path.join(at, "fifo"))).isFIFO()).toBe(true);
  expect((await lstat(path.join(at, "socket"))).isSocket()).toBe(true);
}

/** A socket file left behind: listen on a short path (sockets have a ~100 byte limit), move it, close (which unlinks only the old name). */
async function plantSocket(at: string, short: string): Promise<void> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(short, resolve);
  });
  await rename(short, at);
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Runs the remove-as fixture (as uid 65534 when we are root) and returns its JSON line. */
async function removeAsNonRoot(root: string, target: string): Promise<{ uid: number; outcome: string; code?: string; message?: string }> {
  const ids = process.getuid?.() === 0 ? { uid: NOBODY, gid: NOBODY } : {};
  const child = spawn(process.execPath, [REMOVE_AS, root, target], { ...ids, stdio: ["ignore", "pipe", "pipe"] });
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, "SIGKILL");
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise((resolve) => child.once("close", resolve));
  expect(code, stderr).toBe(0);
  return JSON.parse(stdout) as { uid: number; outcome: string; code?: string; message?: string };
}

describe("the tests' own cleanup", () => {
  it("regression: a 3,000-level tree a failed test leaves behind is removed (fs.rm fails with ENAMETOOLONG on it)", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "ocgw-ws-cleanup-"));
    await deepTree(dir, 3000);
    await removeTestDir(dir);
    expect(existsSync(dir)).toBe(false);
  });
});

describe("removeTree: hostile trees (regression: a hostile tree hung removal)", () => {
  it(
    "regression: a hostile tree hung removal — a 10,000-level tree is removed through short paths inside one trash entry, while timers keep firing",
    async () => {
      const DEPTH = 10_000;
      const { port, seen } = recording(nodeFsPort);
      const { root, dir, release } = await ephemeral(port);
      await deepTree(dir, DEPTH);
      // find walks by directory fds: the deepest directory is DEPTH levels down, its path far beyond PATH_MAX.
      const deepest = (await run("find", [dir, "-mindepth", String(DEPTH), "-type", "d", "-print", "-quit"])).stdout.trim();
      expect(Buffer.byteLength(deepest)).toBeGreaterThan(4096);

      seen.on = true;
      const loop = watchEventLoop();
      const result = await release();
      const { ticks, longestGapMs, mostFsRequests } = loop.stop();
      seen.on = false;

      expect(result.outcome, String(result.error)).toBe("removed");
      expect(existsSync(dir)).toBe(false);
      expect(await readdir(root)).toEqual([".instances"]);
      // No path grows with depth: the deepest directory is 20,000 bytes down, yet every path stays far below PATH_MAX (4,096).
      const longest = seen.paths.reduce((most, p) => Math.max(most, Buffer.byteLength(p)), 0);
      expect(longest).toBeLessThan(Buffer.byteLength(root) + 2048);
      // Nothing left the lease's own trash entry: no pieces were moved out to new root entries.
      const tops = new Set(seen.paths.map((p) => path.relative(root, p).split(path.sep)[0] as string));
      expect([...tops].filter((name) => name.startsWith(".."))).toEqual([]);
      expect([...tops].filter((name) => name.startsWith(".trash-")).length).toBe(1);
      // The loop kept serving timers: a 10 ms interval fired many times, never held up for long (generous: 100 periods).
      expect(ticks).toBeGreaterThanOrEqual(10);
      expect(longestGapMs).toBeLessThan(1_000);
      expect(mostFsRequests).toBeLessThanOrEqual(IN_FLIGHT_BOUND);
    },
    HANG_MS,
  );

  it.skipIf(asNobodyBlocked !== null)(
    "regression: a hostile tree hung removal — FIFOs, sockets, links out, unreadable directories and undecodable names, at the top and 3,000 levels down, are removed by a non-root user; link targets survive",
    async () => {
      const base = await tempDir();
      const root = path.join(base, "root");
      const target = path.join(root, "ws");
      const outside = path.join(base, "outside");
      await mkdir(outside);
      await writeFile(path.join(outside, "precious.txt"), "precious");
      await mkdir(target, { recursive: true, mode: 0o700 });
      await deepTree(target, 3000, (bottom) => plantHostile(bottom, outside, base));
      await plantHostile(target, outside, base);
      // Everything, the link targets included, belongs to the user that removes: following a link would delete them.
      if (process.getuid?.() === 0) await run("chown", ["-hR", `${NOBODY}:${NOBODY}`, base]);

      const out = await removeAsNonRoot(root, target);

      expect(out.uid).not.toBe(0);
      expect(out.outcome, out.message).toBe("removed");
      expect(await readdir(root)).toEqual([]);
      expect(await readdir(outside)).toEqual(["precious.txt"]);
      expect(await readFile(path.join(outside, "precious.txt"), "utf8")).toBe("precious");
    },
    HANG_MS,
  );

  it(
    "regression: a hostile tree hung removal — a directory of 50,000 entries is removed with a bounded number of fs requests in flight, while a 10 ms timer keeps its pace",
    async () => {
      const ENTRIES = 50_000;
      const { root, dir, release } = await ephemeral(nodeFsPort);
      const outside = path.join(path.dirname(root), "outside.txt");
      await writeFile(outside, "outside");
      const wide = path.join(dir, "wide");
      await mkdir(wide);
      for (let i = 0; i < ENTRIES; i += 500) {
        const names = Array.from({ length: Math.min(500, ENTRIES - i) }, (_, j) => path.join(wide, `e${i + j}`));
        await Promise.all(names.map((name) => symlink(outside, name)));
      }
      expect((await readdir(wide)).length).toBe(ENTRIES);

      const loop = watchEventLoop();
      const result = await release();
      const { ticks, longestGapMs, mostFsRequests } = loop.stop();

      expect(result.outcome, String(result.error)).toBe("removed");
      expect(existsSync(dir)).toBe(false);
      expect(await readdir(root)).toEqual([".instances"]);
      expect(await readFile(outside, "utf8")).toBe("outside");
      // Streaming: a few requests at a time, never one per entry (a fan-out over the whole listing queues 50,000).
      expect(mostFsRequests).toBeLessThanOrEqual(IN_FLIGHT_BOUND);
      // Generous on purpose (100 periods): a removal that deletes everything in one go stalls for seconds.
      expect(ticks).toBeGreaterThanOrEqual(1);
      expect(longestGapMs).toBeLessThan(1_000);
    },
    HANG_MS,
  );
});

describe("removeTree: listings, races and refusals (memfs)", () => {
  const ROOT = "/r";
  const TRASH = "/r/.trash-test-abcdefghij";

  /** A trash entry holding a small tree and, unless `deep` is false, a chain deeper than one walk enters in place (so part of it is parked). */
  function volume(deep = true): ReturnType<typeof memfsPort> {
    const made = memfsPort();
    if (deep) made.vol.mkdirSync(`${TRASH}/deep${"/d".repeat(80)}`, { recursive: true });
    made.vol.mkdirSync(`${TRASH}/a/b/c`, { recursive: true });
    made.vol.writeFileSync(`${TRASH}/a/b/c/f`, "f");
    made.vol.writeFileSync(`${TRASH}/a/g`, "g");
    made.vol.mkdirSync("/outside/keep", { recursive: true });
    made.vol.writeFileSync("/outside/keep/precious", "precious");
    return made;
  }

  it("refuses a tree that is not directly inside the root, and touches nothing", async () => {
    const { port, vol } = volume();
    for (const tree of [`${TRASH}/a`, "/outside", ROOT]) {
      const error = await removeTree(port, ROOT, tree).then(() => null, (caught: unknown) => caught);
      expect(isWorkspaceError(error, "WS_OUTSIDE_ROOT"), `${tree}: ${String(error)}`).toBe(true);
    }
    expect(vol.readFileSync(`${TRASH}/a/b/c/f`, "utf8")).toBe("f");
    expect(vol.existsSync("/outside/keep/precious")).toBe(true);
  });

  it("an ordinary tree is removed on a full file system: nothing is created or moved (mkdir and rename fail with ENOSPC)", async () => {
    const { port: base, vol } = volume(false);
    vol.mkdirSync(`${TRASH}/node_modules/pkg/lib/deeper/still`, { recursive: true });
    vol.writeFileSync(`${TRASH}/node_modules/pkg/lib/deeper/still/index.js`, "x");
    const { port, faults } = withFaults(base);
    faults.set("mkdir", { code: "ENOSPC" });
    faults.set("rename", { code: "ENOSPC" });
    await removeTree(port, ROOT, TRASH);
    expect(vol.readdirSync(ROOT)).toEqual([]);
  });

  it("a listing that does not say which entries are directories still removes them (unlink refuses, lstat decides)", async () => {
    const { port: base, vol } = volume();
    const promises = new Proxy(base.promises, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== "opendir" || typeof value !== "function") return value;
        return async (...args: unknown[]) => {
          const dir = (await (value as (...a: unknown[]) => Promise<AsyncIterable<{ name: unknown }>>).apply(target, args)) as AsyncIterable<{ name: unknown }>;
          return (async function* () {
            for await (const entry of dir) yield { name: entry.name, isDirectory: () => false };
          })();
        };
      },
    });
    await removeTree({ ...base, promises }, ROOT, TRASH);
    expect(vol.readdirSync(ROOT)).toEqual([]);
  });

  it("a staging name already taken in the tree is not reused: another is made", async () => {
    const { port: base, vol } = volume();
    const { port, faults } = withFaults(base);
    const tried: string[] = [];
    faults.set("mkdir", {
      code: "EEXIST",
      match: (target) => {
        tried.push(target);
        return tried.length === 1;
      },
    });
    await removeTree(port, ROOT, TRASH);
    expect(tried.length).toBe(2);
    expect(path.basename(tried[0] as string)).not.toBe(path.basename(tried[1] as string));
    expect(vol.readdirSync(ROOT)).toEqual([]);
  });

  it("a parked directory swapped for a link to outside is unlinked; the link's target is untouched", async () => {
    const { port: base, vol } = volume();
    let swapped = 0;
    const promises = new Proxy(base.promises, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== "rename" || typeof value !== "function") return value;
        return async (from: string | Buffer, to: string) => {
          await (value as (a: string | Buffer, b: string) => Promise<void>).call(target, from, to);
          if (swapped === 0 && path.basename(path.dirname(to)).startsWith(".ocgw-rm-")) {
            // An intruder's move, right after the park: our directory out of the tree, a link to outside in.
            swapped += 1;
            vol.renameSync(to, "/moved-away");
            vol.symlinkSync("/outside/keep", to);
          }
        };
      },
    });
    await removeTree({ ...base, promises }, ROOT, TRASH);
    expect(swapped).toBe(1);
    expect(vol.readdirSync(ROOT)).toEqual([]);
    expect(vol.readFileSync("/outside/keep/precious", "utf8")).toBe("precious");
  });
});
