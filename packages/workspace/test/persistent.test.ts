import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { BOOTSTRAP_FILES } from "../src/bootstrap.ts";
import { isWorkspaceError } from "../src/errors.ts";
import { createPersistentProvider } from "../src/providers/persistent.ts";
import { listTree, tempDir } from "./helpers.ts";

const BOOTSTRAP_NAMES = Object.keys(BOOTSTRAP_FILES).sort();

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );
}

describe("persistent provider", () => {
  it("seeds all seven bootstrap files into a brand-new directory", async () => {
    const stateDir = path.join(await tempDir(), "state");
    const provider = createPersistentProvider({ stateDir });
    const lease = await provider.acquire({ key: "agent:main:x" });
    expect(lease.path).toBe(path.join(stateDir, "workspace"));
    expect(lease.created).toBe(true);
    expect(BOOTSTRAP_NAMES.length).toBe(7);
    expect((await readdir(lease.path as string)).sort()).toEqual(BOOTSTRAP_NAMES);
    for (const name of BOOTSTRAP_NAMES) expect(await readFile(path.join(lease.path as string, name), "utf8")).toBe(BOOTSTRAP_FILES[name]);
  });

  it("adopts an existing directory without adding a single file, and leaves its content byte-identical", async () => {
    const stateDir = path.join(await tempDir(), "state");
    const existing = path.join(stateDir, "workspace-ops");
    await mkdir(existing, { recursive: true });
    const custom = Buffer.from([0x00, 0xff, 0x10, 0x41, 0x0a]);
    await writeFile(path.join(existing, "AGENTS.md"), custom);

    const provider = createPersistentProvider({ stateDir });
    const lease = await provider.acquire({ key: "k", agentId: "ops" });
    expect(lease.path).toBe(existing);
    expect(lease.created).toBe(false);
    expect(listTree(existing)).toEqual(["AGENTS.md"]);
    expect((await readFile(path.join(existing, "AGENTS.md"))).equals(custom)).toBe(true);
  });

  it("with skipBootstrap writes no files into a new directory", async () => {
    const stateDir = path.join(await tempDir(), "state");
    const provider = createPersistentProvider({ stateDir, skipBootstrap: true });
    const lease = await provider.acquire({ key: "k" });
    expect(lease.created).toBe(true);
    expect(await readdir(lease.path as string)).toEqual([]);
  });

  it("never deletes on release", async () => {
    const stateDir = path.join(await tempDir(), "state");
    const provider = createPersistentProvider({ stateDir });
    const lease = await provider.acquire({ key: "k" });
    await writeFile(path.join(lease.path as string, "work.txt"), "work");
    const before = listTree(lease.path as string);
    for (const reason of ["delete", "reset", "shutdown"] as const) {
      const result = await provider.release(lease, reason);
      expect(result.outcome).toBe("kept");
    }
    expect(listTree(lease.path as string)).toEqual(before);
    expect(await readFile(path.join(lease.path as string, "work.txt"), "utf8")).toBe("work");
    expect(await provider.list()).toEqual([]);
  });

  it("the agent layout hands one directory to every key of an agent, and separate ones to separate agents", async () => {
    const base = await tempDir();
    const stateDir = path.join(base, "state");
    const provider = createPersistentProvider({ stateDir, defaultsWorkspace: path.join(base, "ws") });
    const a = await provider.acquire({ key: "one", agentId: "ops" });
    const b = await provider.acquire({ key: "two", agentId: "OPS" });
    const main = await provider.acquire({ key: "three" });
    expect(a.path).toBe(path.join(base, "ws", "ops"));
    expect(b.path).toBe(a.path);
    expect([a.created, b.created]).toEqual([true, false]);
    expect(main.path).toBe(path.join(base, "ws"));
    expect(provider.perKey).toBe(false);
  });

  it('layout "session" gives one directory per key: the same key again adopts it, other keys get their own', async () => {
    const stateDir = path.join(await tempDir(), "state");
    const provider = createPersistentProvider({ stateDir, layout: "session" });
    const first = await provider.acquire({ key: "agent:main:chat-1" });
    await writeFile(path.join(first.path as string, "notes.txt"), "kept");
    await provider.release(first, "delete");
    const again = await provider.acquire({ key: "agent:main:chat-1" });
    const other = await provider.acquire({ key: "agent:main:chat-2" });
    const twin = await provider.acquire({ key: "AGENT:MAIN:CHAT-1" });

    expect(provider.perKey).toBe(true);
    expect(first.created).toBe(true);
    expect(again.path).toBe(first.path);
    expect(again.created).toBe(false);
    expect(await readFile(path.join(again.path as string, "notes.txt"), "utf8")).toBe("kept");
    expect(other.path).not.toBe(first.path);
    expect(other.created).toBe(true);
    expect(twin.path).not.toBe(first.path);
    for (const lease of [first, other, twin]) {
      expect(path.dirname(lease.path as string)).toBe(stateDir);
      expect(path.basename(lease.path as string)).toMatch(/^workspace-[a-z0-9_-]+-[0-9a-f]{12}$/);
    }
  });

  it("refuses with WS_CREATE_FAILED when the workspace path is a regular file, and leaves the file alone", async () => {
    const stateDir = path.join(await tempDir(), "state");
    await mkdir(stateDir);
    const file = path.join(stateDir, "workspace");
    await writeFile(file, "I am a file");
    const provider = createPersistentProvider({ stateDir });
    const error = await rejection(provider.acquire({ key: "k" }));
    expect(isWorkspaceError(error, "WS_CREATE_FAILED"), String(error)).toBe(true);
    expect(await readFile(file, "utf8")).toBe("I am a file");
    expect(await provider.list()).toEqual([]);
  });

  it("refuses with WS_CREATE_FAILED when the parent cannot be created", async () => {
    const base = await tempDir();
    await writeFile(path.join(base, "blocker"), "file where a directory should be");
    const provider = createPersistentProvider({ stateDir: path.join(base, "blocker", "state") });
    const error = await rejection(provider.acquire({ key: "k" }));
    expect(isWorkspaceError(error, "WS_CREATE_FAILED"), String(error)).toBe(true);
    expect((error as Error).cause).toBeDefined();
  });

  it("refuses a relative or missing stateDir with WS_INVALID_OPTIONS", () => {
    for (const stateDir of ["state", "./state", "", undefined]) {
      let caught: unknown;
      try {
        createPersistentProvider({ stateDir: stateDir as string });
      } catch (error) {
        caught = error;
      }
      expect(isWorkspaceError(caught, "WS_INVALID_OPTIONS"), `${stateDir}: ${String(caught)}`).toBe(true);
    }
  });
});
