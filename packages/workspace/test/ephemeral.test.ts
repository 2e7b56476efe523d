import { existsSync } from "node:fs";
import { chmod, lstat, mkdir, readFile, readdir, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { BOOTSTRAP_FILES } from "../src/bootstrap.ts";
import { errnoCode, isWorkspaceError } from "../src/errors.ts";
import { type FsPort, nodeFsPort } from "../src/fs-port.ts";
import { MARKER_NAME } from "../src/marker.ts";
import { type EphemeralProvider, type EphemeralProviderOptions, createEphemeralProvider } from "../src/providers/ephemeral.ts";
import { safeRemove } from "../src/remove.ts";
import { defaultEphemeralRoot, ensurePrivateRoot } from "../src/root.ts";
import type { WorkspaceLease } from "../src/types.ts";
import { listTree, memfsPort, tempDir } from "./helpers.ts";

/** A provider on `<fresh temp dir>/root`, closed when the test ends. */
async function provider(options: EphemeralProviderOptions = {}): Promise<{ p: EphemeralProvider; base: string; root: string }> {
  const base = await tempDir();
  const root = options.root ?? path.join(base, "root");
  const p = await createEphemeralProvider({ ...options, root });
  onTestFinished(() => p.close());
  return { p, base, root };
}

function dirOf(lease: WorkspaceLease): string {
  expect(lease.path).not.toBeNull();
  return lease.path as string;
}

async function mode(p: string): Promise<number> {
  return (await lstat(p)).mode & 0o777;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );
}

/** Contents of every regular file below `dir`, keyed by relative path: byte-for-byte comparison. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const rel of listTree(dir)) {
    const full = path.join(dir, rel);
    const st = await lstat(full);
    out[rel] = st.isFile() ? (await readFile(full)).toString("base64") : st.isSymbolicLink() ? "link" : "dir";
  }
  return out;
}

describe("ephemeral provider: modes and marker", () => {
  async function checkModesAndMarker(): Promise<void> {
    const { p, root } = await provider();
    expect(await mode(root)).toBe(0o700);
    const lease = await p.acquire({ key: "agent:main:modes", agentId: "Ops Team" });
    const dir = dirOf(lease);
    expect(path.dirname(dir)).toBe(root);
    expect(await mode(dir)).toBe(0o700);
    const markerPath = path.join(dir, MARKER_NAME);
    expect((await lstat(markerPath)).isFile()).toBe(true);
    expect(await mode(markerPath)).toBe(0o600);

    const marker = JSON.parse(await readFile(markerPath, "utf8")) as Record<string, unknown>;
    const st = await lstat(dir, { bigint: true });
    expect(marker).toMatchObject({
      leaseId: lease.leaseId,
      instanceId: p.instance.id,
      key: "agent:main:modes",
      agentId: "ops-team",
      name: path.basename(dir),
      dev: st.dev.toString(),
      ino: st.ino.toString(),
    });
    expect(lease.identity).toEqual({ dev: st.dev.toString(), ino: st.ino.toString() });
    expect(lease.instanceId).toBe(p.instance.id);
    expect(lease.created).toBe(true);
  }

  it("creates the root 0700, each lease 0700 and a 0600 marker naming the lease, its dir and its identity", async () => {
    await checkModesAndMarker();
  });

  it("keeps those modes under umask 0", async () => {
    const previous = process.umask(0);
    onTestFinished(() => {
      process.umask(previous);
    });
    expect(process.umask()).toBe(0);
    await checkModesAndMarker();
  });
});

describe("ephemeral provider: seeding", () => {
  it("seeds the bootstrap templates by default", async () => {
    const { p } = await provider();
    const dir = dirOf(await p.acquire({ key: "seeded" }));
    const names = Object.keys(BOOTSTRAP_FILES);
    expect(names.length).toBe(7);
    expect((await readdir(dir)).sort()).toEqual([...names, MARKER_NAME].sort());
    for (const name of names) expect(await readFile(path.join(dir, name), "utf8")).toBe(BOOTSTRAP_FILES[name]);
  });

  it('with seed: "none" holds only the marker', async () => {
    const { p } = await provider({ seed: "none" });
    const dir = dirOf(await p.acquire({ key: "bare" }));
    expect(await readdir(dir)).toEqual([MARKER_NAME]);
  });

  it("seedFrom copies top-level regular files only: no subdirectories, no link followed or recreated", async () => {
    const { p, base } = await provider();
    const canary = path.join(base, "canary");
    await mkdir(canary);
    const secret = "CANARY-SECRET-7f3a9c";
    await writeFile(path.join(canary, "secret.txt"), secret);
    const source = path.join(base, "agent-ws");
    await mkdir(path.join(source, "sub"), { recursive: true });
    await writeFile(path.join(source, "NOTES.md"), "notes\n");
    await writeFile(path.join(source, "data.json"), '{"a":1}');
    await writeFile(path.join(source, "sub", "inner.txt"), "inner");
    await symlink(path.join(canary, "secret.txt"), path.join(source, "evil.txt"));
    await symlink(canary, path.join(source, "evil-dir"));
    const canaryBefore = await snapshot(canary);

    const dir = dirOf(await p.acquire({ key: "from-agent", seedFrom: source }));
    expect(listTree(dir)).toEqual([MARKER_NAME, "NOTES.md", "data.json"].sort());
    expect(await readFile(path.join(dir, "NOTES.md"), "utf8")).toBe("notes\n");
    expect(await readFile(path.join(dir, "data.json"), "utf8")).toBe('{"a":1}');
    for (const rel of listTree(dir)) {
      const full = path.join(dir, rel);
      expect((await lstat(full)).isSymbolicLink()).toBe(false);
      expect(await readFile(full, "utf8")).not.toContain(secret);
    }
    expect(await snapshot(canary)).toEqual(canaryBefore);
  });
});

describe("ephemeral provider: unsafe roots", () => {
  it("refuses a root that is a symlink to a directory we own, and writes nothing into its target", async () => {
    const base = await tempDir();
    const target = path.join(base, "target");
    await mkdir(target, { mode: 0o700 });
    await writeFile(path.join(target, "keep.txt"), "keep");
    const root = path.join(base, "root");
    await symlink(target, root);
    const before = await snapshot(target);

    const error = await rejection(createEphemeralProvider({ root }));
    expect(isWorkspaceError(error, "WS_ROOT_UNSAFE"), String(error)).toBe(true);
    expect((error as Error).message).toContain("is a symlink");
    expect(await snapshot(target)).toEqual(before);
    expect((await lstat(root)).isSymbolicLink()).toBe(true);
  });

  it("refuses a root that is a regular file", async () => {
    const base = await tempDir();
    const root = path.join(base, "root");
    await writeFile(root, "not a dir");
    const error = await rejection(createEphemeralProvider({ root }));
    expect(isWorkspaceError(error, "WS_ROOT_UNSAFE"), String(error)).toBe(true);
    expect(await readFile(root, "utf8")).toBe("not a dir");
  });

  it("tightens a 0777 root of ours to 0700 by default", async () => {
    const base = await tempDir();
    const root = path.join(base, "root");
    await mkdir(root);
    await chmod(root, 0o777);
    const p = await createEphemeralProvider({ root });
    onTestFinished(() => p.close());
    expect(await mode(root)).toBe(0o700);
  });

  it('with looseRoot: "refuse" refuses a 0777 root and leaves its mode and contents alone', async () => {
    const base = await tempDir();
    const root = path.join(base, "root");
    await mkdir(root);
    await chmod(root, 0o777);
    const error = await rejection(createEphemeralProvider({ root, looseRoot: "refuse" }));
    expect(isWorkspaceError(error, "WS_ROOT_UNSAFE"), String(error)).toBe(true);
    expect(await mode(root)).toBe(0o777);
    expect(listTree(root)).toEqual([]);
  });

  it('creates a missing root private from the start: looseRoot "refuse" accepts it, even under umask 0', async () => {
    const previous = process.umask(0);
    onTestFinished(() => {
      process.umask(previous);
    });
    const base = await tempDir();
    const root = path.join(base, "fresh-root");
    const p = await createEphemeralProvider({ root, looseRoot: "refuse" });
    onTestFinished(() => p.close());
    expect(await mode(root)).toBe(0o700);
  });

  it("refuses a root owned by another uid and writes nothing into it (memfs)", async () => {
    const { port, vol } = memfsPort();
    const root = "/tmp/openclaw-0";
    // World-writable, as a squatter would leave it: only the owner check stands between us and writing into it.
    vol.mkdirSync(root, { recursive: true });
    vol.chownSync(root, 65534, 65534);
    vol.chmodSync(root, 0o777);
    const error = await rejection(createEphemeralProvider({ root, fs: port }));
    expect(isWorkspaceError(error, "WS_ROOT_UNSAFE"), String(error)).toBe(true);
    expect((error as Error).message).toContain("65534");
    expect(vol.readdirSync(root)).toEqual([]);
  });

  it("refuses a relative root instead of resolving it against the working directory", async () => {
    const relative = `ocgw-relative-root-${process.pid}-${Date.now()}`;
    const resolved = path.resolve(relative);
    onTestFinished(() => rm(resolved, { recursive: true, force: true }));
    const error = await rejection(createEphemeralProvider({ root: relative }));
    expect(isWorkspaceError(error, "WS_INVALID_OPTIONS"), String(error)).toBe(true);
    expect(existsSync(resolved)).toBe(false);
  });
});

describe("ephemeral provider: release", () => {
  it("removes planted links (dir, file, dangling, loop) without touching what they point at", async () => {
    const { p, base } = await provider();
    const canary = path.join(base, "canary");
    await mkdir(canary);
    await writeFile(path.join(canary, "file"), "precious bytes \u0000\u00ff");
    await mkdir(path.join(canary, "nested"));
    await writeFile(path.join(canary, "nested", "deep.txt"), "deep");
    const before = await snapshot(canary);

    const lease = await p.acquire({ key: "planted" });
    const dir = dirOf(lease);
    await symlink(canary, path.join(dir, "link"));
    await mkdir(path.join(dir, "sub"));
    await symlink(path.join(canary, "file"), path.join(dir, "sub", "flink"));
    await symlink(path.join(base, "does-not-exist"), path.join(dir, "dangling"));
    await symlink(path.join(dir, "loop-b"), path.join(dir, "loop-a"));
    await symlink(path.join(dir, "loop-a"), path.join(dir, "loop-b"));

    const result = await p.release(lease, "run-end");
    expect(result.outcome).toBe("removed");
    expect(result.error).toBeUndefined();
    expect(existsSync(dir)).toBe(false);
    expect(await snapshot(canary)).toEqual(before);
    expect((await readdir(p.root)).filter((name) => name.startsWith(".trash-"))).toEqual([]);
  });

  it("removes a tree too deep for fs.rm (depth 3000, paths > 4096 bytes) and leaves no trash", async () => {
    const { p, root } = await provider({ seed: "none" });
    const lease = await p.acquire({ key: "deep" });
    const dir = dirOf(lease);
    const CHAINS = 6;
    const LEVELS = 500;
    const chainTail = Array.from({ length: LEVELS - 1 }, () => "d").join(path.sep);
    // Chain i: <dir>/c<i>/d/d/.../d (LEVELS levels). Every path handed to mkdir/rename stays short.
    for (let i = 0; i < CHAINS; i++) await mkdir(path.join(dir, `c${i}`, chainTail), { recursive: true });
    // Nest from the back: c5 into the bottom of c4, then c4 (now 1000 deep) into the bottom of c3, ...
    for (let i = CHAINS - 1; i > 0; i--) {
      await rename(path.join(dir, `c${i}`), path.join(dir, `c${i - 1}`, chainTail, `c${i}`));
    }
    await writeFile(path.join(dir, "c0", chainTail, "c1", "file-in-the-middle.txt"), "x");
    // Depth and length of the deepest directory: 6 × 500 levels below the workspace.
    const depth = CHAINS * LEVELS;
    const deepestRelBytes = CHAINS * (Buffer.byteLength(`c0${path.sep}`) + Buffer.byteLength(chainTail));
    expect(depth).toBeGreaterThanOrEqual(3000);
    expect(Buffer.byteLength(dir) + deepestRelBytes).toBeGreaterThan(4096);
    // The construction really nested: c1..c5 are no longer at the top.
    expect((await readdir(dir)).filter((name) => /^c\d$/.test(name))).toEqual(["c0"]);

    const result = await p.release(lease, "delete");
    expect(result.outcome, String(result.error)).toBe("removed");
    expect(existsSync(dir)).toBe(false);
    expect((await readdir(root)).filter((name) => name.startsWith(".trash-"))).toEqual([]);
  });
});

describe("ephemeral provider: identity checks on release", () => {
  it("refuses a directory replaced by another one at the same path and leaves the newcomer alone", async () => {
    const { p, base } = await provider();
    const lease = await p.acquire({ key: "swapped-dir" });
    const dir = dirOf(lease);
    await rename(dir, path.join(base, "original-moved"));
    await mkdir(dir, { mode: 0o700 });
    await writeFile(path.join(dir, "someone-elses.txt"), "not yours");

    const result = await p.release(lease, "delete");
    expect(result.outcome).toBe("refused");
    expect(isWorkspaceError(result.error, "WS_IDENTITY_CHANGED"), String(result.error)).toBe(true);
    expect(await readFile(path.join(dir, "someone-elses.txt"), "utf8")).toBe("not yours");
    expect(listTree(dir)).toEqual(["someone-elses.txt"]);
    expect((await readdir(p.root)).filter((name) => name.startsWith(".trash-"))).toEqual([]);
  });

  it("refuses a directory replaced by a symlink and leaves the link's target alone", async () => {
    const { p, base } = await provider();
    const lease = await p.acquire({ key: "swapped-link" });
    const dir = dirOf(lease);
    const target = path.join(base, "target");
    await mkdir(target);
    await writeFile(path.join(target, "file.txt"), "target content");
    const before = await snapshot(target);
    await rename(dir, path.join(base, "original-moved"));
    await symlink(target, dir);

    const result = await p.release(lease, "delete");
    expect(result.outcome).toBe("refused");
    expect(isWorkspaceError(result.error, "WS_IDENTITY_CHANGED"), String(result.error)).toBe(true);
    expect(await snapshot(target)).toEqual(before);
    expect((await lstat(dir)).isSymbolicLink()).toBe(true);
  });

  it("refuses, without throwing, a crafted lease whose path is not directly inside the root", async () => {
    const { p, base, root } = await provider();
    const lease = await p.acquire({ key: "genuine" });
    const outside = path.join(base, "outside");
    await mkdir(outside);
    await writeFile(path.join(outside, "f"), "f");
    const nested = path.join(dirOf(lease), "nested");
    await mkdir(nested);
    for (const crafted of [outside, path.join(root, "..", "outside"), nested, root]) {
      const result = await p.release({ ...lease, path: crafted }, "manual");
      expect(result.outcome, crafted).toBe("refused");
      expect(isWorkspaceError(result.error, "WS_OUTSIDE_ROOT"), `${crafted}: ${String(result.error)}`).toBe(true);
    }
    expect(listTree(outside)).toEqual(["f"]);
    expect((await stat(nested)).isDirectory()).toBe(true);
    expect((await p.list()).map((record) => record.leaseId)).toEqual([lease.leaseId]);
  });
});

describe("ephemeral provider: limits and instances", () => {
  it("maxLeases: 2 refuses a third acquire until one is released", async () => {
    const { p } = await provider({ maxLeases: 2, seed: "none" });
    const a = await p.acquire({ key: "a" });
    await p.acquire({ key: "b" });
    const error = await rejection(p.acquire({ key: "c" }));
    expect(isWorkspaceError(error, "WS_LIMIT_REACHED"), String(error)).toBe(true);
    expect((await p.list()).length).toBe(2);
    expect((await p.release(a, "delete")).outcome).toBe("removed");
    const c = await p.acquire({ key: "c" });
    expect(existsSync(dirOf(c))).toBe(true);
    expect((await p.list()).length).toBe(2);
  });

  it("maxLeases holds for concurrent acquires too", async () => {
    const { p, root } = await provider({ maxLeases: 2, seed: "none" });
    const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => p.acquire({ key: `race-${i}` })));
    const ok = results.filter((result) => result.status === "fulfilled");
    const refused = results.filter((result) => result.status === "rejected" && isWorkspaceError(result.reason, "WS_LIMIT_REACHED"));
    expect(ok.length).toBe(2);
    expect(refused.length).toBe(4);
    expect((await p.list()).length).toBe(2);
    expect((await readdir(root)).filter((name) => !name.startsWith(".")).length).toBe(2);
  });

  it("rejects a maxLeases that is not a positive integer", async () => {
    const base = await tempDir();
    for (const maxLeases of [0, -1, 1.5]) {
      const error = await rejection(createEphemeralProvider({ root: path.join(base, "root"), maxLeases }));
      expect(isWorkspaceError(error, "WS_INVALID_OPTIONS"), `${maxLeases}: ${String(error)}`).toBe(true);
    }
  });

  it("two providers on one root keep their own leases and stamp their own instance in the markers", async () => {
    const { p: first, root } = await provider({ seed: "none" });
    const second = await createEphemeralProvider({ root, seed: "none" });
    onTestFinished(() => second.close());
    expect(second.instance.id).not.toBe(first.instance.id);

    const a = await first.acquire({ key: "shared-key" });
    const b = await second.acquire({ key: "shared-key" });
    expect(a.path).not.toBe(b.path);
    expect((await first.list()).map((record) => record.leaseId)).toEqual([a.leaseId]);
    expect((await second.list()).map((record) => record.leaseId)).toEqual([b.leaseId]);

    const markerA = JSON.parse(await readFile(path.join(dirOf(a), MARKER_NAME), "utf8")) as { instanceId: string };
    const markerB = JSON.parse(await readFile(path.join(dirOf(b), MARKER_NAME), "utf8")) as { instanceId: string };
    expect(markerA.instanceId).toBe(first.instance.id);
    expect(markerB.instanceId).toBe(second.instance.id);
  });
});

describe("ephemeral provider: options and the root after start", () => {
  it("refuses instance and liveness together, and an instance of another root", async () => {
    const { p, base } = await provider();
    const both = await rejection(createEphemeralProvider({ root: p.root, instance: p.instance, liveness: { staleMs: 10_000 } }));
    expect(isWorkspaceError(both, "WS_INVALID_OPTIONS"), String(both)).toBe(true);
    const elsewhere = await rejection(createEphemeralProvider({ root: path.join(base, "other-root"), instance: p.instance }));
    expect(isWorkspaceError(elsewhere, "WS_INVALID_OPTIONS"), String(elsewhere)).toBe(true);
    expect(existsSync(path.join(base, "other-root"))).toBe(false);
  });

  it("shares a given instance and leaves it open on close", async () => {
    const { p } = await provider();
    const sharing = await createEphemeralProvider({ root: p.root, instance: p.instance, seed: "none" });
    const lease = await sharing.acquire({ key: "shared-instance" });
    expect(lease.instanceId).toBe(p.instance.id);
    await sharing.close();
    expect(p.instance.closed).toBe(false);
    expect(existsSync(path.join(p.root, ".instances", `${p.instance.id}.json`))).toBe(true);
  });

  it("makes a vanished root again, but refuses a root replaced behind its back (WS_ROOT_UNSAFE), creating nothing", async () => {
    const { p, base, root } = await provider();
    await rename(root, path.join(base, "root-moved"));
    const again = await p.acquire({ key: "k" });
    expect(path.dirname(again.path as string)).toBe(root);
    await p.release(again, "delete");

    await rename(root, path.join(base, "root-moved-2"));
    await mkdir(root, { mode: 0o700 });
    const replaced = await rejection(p.acquire({ key: "k" }));
    expect(isWorkspaceError(replaced, "WS_ROOT_UNSAFE"), String(replaced)).toBe(true);
    expect(listTree(root)).toEqual([]);
  });

  it("uses <realpath of TMPDIR>/openclaw-<uid> when no root is given", async () => {
    const base = await tempDir();
    const previous = process.env.TMPDIR;
    onTestFinished(() => {
      if (previous === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = previous;
    });
    await mkdir(path.join(base, "real-tmp"));
    await symlink(path.join(base, "real-tmp"), path.join(base, "tmp-link"));
    process.env.TMPDIR = path.join(base, "tmp-link");
    const expected = path.join(base, "real-tmp", `openclaw-${process.getuid?.() ?? "x"}`);
    expect(defaultEphemeralRoot()).toBe(expected);
    const p = await createEphemeralProvider({ seed: "none" });
    onTestFinished(() => p.close());
    expect(p.root).toBe(expected);
    expect(path.dirname(dirOf(await p.acquire({ key: "default-root" })))).toBe(expected);

    process.env.TMPDIR = "relative/tmp";
    const relative = (() => {
      try {
        return defaultEphemeralRoot();
      } catch (error) {
        return error;
      }
    })();
    expect(isWorkspaceError(relative, "WS_ROOT_UNAVAILABLE"), String(relative)).toBe(true);

    process.env.TMPDIR = path.join(base, "missing");
    const missing = await rejection(createEphemeralProvider());
    expect(isWorkspaceError(missing, "WS_ROOT_UNAVAILABLE"), String(missing)).toBe(true);
    expect(existsSync(path.join(base, "missing"))).toBe(false);
  });

  it("ensurePrivateRoot refuses a relative path and reports a root it cannot create", async () => {
    const base = await tempDir();
    const relative = await rejection(ensurePrivateRoot(nodeFsPort, "relative/root"));
    expect(isWorkspaceError(relative, "WS_INVALID_OPTIONS"), String(relative)).toBe(true);
    await writeFile(path.join(base, "file"), "x");
    const blocked = await rejection(createEphemeralProvider({ root: path.join(base, "file", "root") }));
    expect(isWorkspaceError(blocked, "WS_ROOT_UNAVAILABLE"), String(blocked)).toBe(true);
    expect(errnoCode((blocked as Error).cause)).toBe("ENOTDIR");
  });
});

describe("ephemeral provider: seedFrom races", () => {
  it("does not follow a file swapped for a link between listing the source and opening the file", async () => {
    const base = await tempDir();
    const root = path.join(base, "root");
    const canary = path.join(base, "canary.txt");
    await writeFile(canary, "CANARY-8d1e");
    const source = path.join(base, "agent-ws");
    await mkdir(source);
    await writeFile(path.join(source, "swapped.txt"), "innocent");
    await writeFile(path.join(source, "plain.txt"), "plain");
    let swaps = 0;
    const racing: FsPort = {
      ...nodeFsPort,
      promises: new Proxy(nodeFsPort.promises, {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver) as unknown;
          if (prop !== "open" || typeof value !== "function") return value;
          return async (file: string, ...rest: unknown[]) => {
            if (file === path.join(source, "swapped.txt")) {
              // Listed as a regular file a moment ago; a link to the canary by the time it is opened.
              swaps += 1;
              await rm(file);
              await symlink(canary, file);
            }
            return (value as (f: string, ...r: unknown[]) => Promise<unknown>).call(target, file, ...rest);
          };
        },
      }),
    };
    const p = await createEphemeralProvider({ root, fs: racing });
    onTestFinished(() => p.close());
    const dir = dirOf(await p.acquire({ key: "race", seedFrom: source }));
    expect(swaps).toBe(1);
    expect(listTree(dir)).toEqual([MARKER_NAME, "plain.txt"].sort());
    expect(await readFile(canary, "utf8")).toBe("CANARY-8d1e");
  });
});

describe("ephemeral provider: seedFrom limits", () => {
  it("copies at most 64 files, skips files over 1 MiB, and fails cleanly on a missing source", async () => {
    const { p, base, root } = await provider();
    const source = path.join(base, "many");
    await mkdir(source);
    for (let i = 0; i < 70; i++) await writeFile(path.join(source, `f${String(i).padStart(2, "0")}.txt`), `file ${i}`);
    const dir = dirOf(await p.acquire({ key: "many", seedFrom: source }));
    const copied = (await readdir(dir)).filter((name) => name !== MARKER_NAME);
    expect(copied.length).toBe(64);
    for (const name of copied) expect(await readFile(path.join(dir, name), "utf8")).toBe(await readFile(path.join(source, name), "utf8"));

    const bigSource = path.join(base, "big");
    await mkdir(bigSource);
    await writeFile(path.join(bigSource, "big.bin"), Buffer.alloc(1024 * 1024 + 1, 1));
    await writeFile(path.join(bigSource, "small.txt"), "small");
    const bigDir = dirOf(await p.acquire({ key: "big", seedFrom: bigSource }));
    expect((await readdir(bigDir)).sort()).toEqual([MARKER_NAME, "small.txt"].sort());

    const before = (await readdir(root)).sort();
    const error = await rejection(p.acquire({ key: "missing", seedFrom: path.join(base, "no-such-dir") }));
    expect(isWorkspaceError(error, "WS_SEED_FAILED"), String(error)).toBe(true);
    expect(errnoCode((error as Error).cause)).toBe("ENOENT");
    expect((await readdir(root)).sort()).toEqual(before);
    expect((await p.list()).length).toBe(2);
  });
});

describe("safeRemove", () => {
  it("refuses a target that is not a direct child of the root", async () => {
    const base = await tempDir();
    const root = path.join(base, "root");
    await mkdir(path.join(root, "a", "b"), { recursive: true });
    for (const target of [path.join(root, "a", "b"), base, root, path.join(base, "elsewhere")]) {
      const result = await safeRemove({ fs: nodeFsPort, root, target, trashTag: "test-tag-1" });
      expect(result.outcome, target).toBe("refused");
      expect(result.outcome === "refused" && isWorkspaceError(result.error, "WS_OUTSIDE_ROOT")).toBe(true);
    }
    expect(existsSync(path.join(root, "a", "b"))).toBe(true);
  });

  it("puts back, untouched, a directory swapped in between the identity check and the rename", async () => {
    const { p, base, root } = await provider({ seed: "none" });
    const lease = await p.acquire({ key: "toctou" });
    const dir = dirOf(lease);
    let swapped = false;
    const racing: FsPort = {
      ...nodeFsPort,
      promises: new Proxy(nodeFsPort.promises, {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver) as unknown;
          if (prop !== "rename" || typeof value !== "function") return value;
          return async (from: string, to: string) => {
            if (!swapped && from === dir) {
              // The attacker's move, timed right after the check: our directory out, theirs in.
              swapped = true;
              await rename(dir, path.join(base, "ours-moved"));
              await mkdir(dir);
              await writeFile(path.join(dir, "theirs.txt"), "theirs");
            }
            return (value as (a: string, b: string) => Promise<void>).call(target, from, to);
          };
        },
      }),
    };
    const result = await safeRemove({ fs: racing, root, target: dir, identity: lease.identity, trashTag: p.instance.id });
    expect(swapped).toBe(true);
    expect(result.outcome).toBe("refused");
    expect(result.outcome === "refused" && isWorkspaceError(result.error, "WS_IDENTITY_CHANGED")).toBe(true);
    expect(await readFile(path.join(dir, "theirs.txt"), "utf8")).toBe("theirs");
    expect((await readdir(root)).filter((name) => name.startsWith(".trash-"))).toEqual([]);
  });
});
