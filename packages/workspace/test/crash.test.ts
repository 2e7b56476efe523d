import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import * as path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { describe, expect, it, onTestFinished } from "vitest";
import { createLivenessProbe } from "../src/instance.ts";
import { createEphemeralProvider } from "../src/providers/ephemeral.ts";
import { sweep } from "../src/sweep.ts";
import { listTree, procStatField, tempDir } from "./helpers.ts";

const FIXTURE = fileURLToPath(new URL("./fixtures/hold-leases.ts", import.meta.url));
/** Hang detection only: a healthy child answers in well under a second. */
const CHILD_TIMEOUT_MS = 20_000;

interface Held {
  pid: number;
  instanceId: string;
  paths: string[];
  trashPath: string | null;
}

/** Starts the fixture and resolves with its JSON line; the child is SIGKILLed when the test ends if still running. */
async function holdLeases(root: string, count: number, ...flags: ("trash" | `stale-ms=${number}`)[]): Promise<{ child: ChildProcess; held: Held; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, [FIXTURE, root, String(count), ...flags], { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve(signal ?? code)));
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, "SIGKILL");
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const held = await new Promise<Held>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no line from the fixture within ${CHILD_TIMEOUT_MS} ms; stderr: ${stderr}`)), CHILD_TIMEOUT_MS);
    lines.once("line", (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line) as Held);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`fixture exited (${signal ?? code}) before reporting; stderr: ${stderr}`));
    });
  });
  lines.close();
  return { child, held, exited };
}

async function kill(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  expect(child.pid).toBeDefined();
  process.kill(child.pid as number, "SIGKILL");
  const how = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve("timeout"), CHILD_TIMEOUT_MS))]);
  expect(how).toBe("SIGKILL");
}

/** Polls every 25 ms until `condition` holds; fails after `timeoutMs` (a hang bound only). */
async function until(condition: () => Promise<boolean>, what: string, timeoutMs = CHILD_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** How long ago the instance's liveness lock was last refreshed, in ms. */
async function lockAgeMs(root: string, instanceId: string): Promise<number> {
  return Date.now() - (await lstat(path.join(root, ".instances", `${instanceId}.lock`))).mtimeMs;
}

async function sweeper(root: string): Promise<Awaited<ReturnType<typeof createEphemeralProvider>>> {
  const provider = await createEphemeralProvider({ root, seed: "none" });
  onTestFinished(() => provider.close());
  return provider;
}

describe("crash: a SIGKILLed gateway's leases", () => {
  it("are kept while the process lives and reclaimed right after it is killed, without waiting for staleMs", async () => {
    const root = path.join(await tempDir(), "root");
    const { child, held, exited } = await holdLeases(root, 5);
    expect(held.pid).toBe(child.pid);
    expect(held.paths.length).toBe(5);
    for (const leasePath of held.paths) {
      expect(path.dirname(leasePath)).toBe(root);
      expect(existsSync(leasePath)).toBe(true);
    }
    const mine = await sweeper(root);

    const whileAlive = await sweep({ root, instance: mine.instance });
    expect(whileAlive.reclaimed).toBe(0);
    expect(whileAlive.kept).toBe(5);
    expect(whileAlive.entries.filter((entry) => entry.instanceId === held.instanceId && entry.action === "keep").length).toBe(5);
    expect(whileAlive.forgottenInstances).toBe(0);
    for (const leasePath of held.paths) expect(existsSync(leasePath)).toBe(true);

    await kill(child, exited);
    // Default liveness (staleMs 60 s): the child's lock is still fresh, only the pid check can prove it dead.
    const afterKill = await sweep({ root, instance: mine.instance });
    expect(afterKill.reclaimed).toBe(5);
    expect(afterKill.failed).toBe(0);
    for (const leasePath of held.paths) expect(existsSync(leasePath)).toBe(false);
    expect(afterKill.forgottenInstances).toBeGreaterThanOrEqual(1);
    const left = listTree(root);
    expect(left.filter((rel) => rel.includes(held.instanceId))).toEqual([]);
    expect((await readdir(root)).sort()).toEqual([".instances"]);
  });

  it("killed between the rename to trash and the delete: the next sweep finishes the delete", async () => {
    const root = path.join(await tempDir(), "root");
    const { child, held, exited } = await holdLeases(root, 2, "trash");
    const trashPath = held.trashPath as string;
    expect(trashPath).not.toBeNull();
    expect(path.basename(trashPath).startsWith(`.trash-${held.instanceId}-`)).toBe(true);
    expect(existsSync(trashPath)).toBe(true);
    expect(existsSync(held.paths[0] as string)).toBe(false);
    const mine = await sweeper(root);

    const whileAlive = await sweep({ root, instance: mine.instance });
    expect(whileAlive.entries.find((entry) => entry.path === trashPath)).toMatchObject({ kind: "trash", action: "keep" });
    expect(existsSync(trashPath)).toBe(true);

    await kill(child, exited);
    const afterKill = await sweep({ root, instance: mine.instance });
    expect(afterKill.entries.find((entry) => entry.path === trashPath)).toMatchObject({ kind: "trash", action: "reclaim", outcome: "removed" });
    expect(existsSync(trashPath)).toBe(false);
    expect(existsSync(held.paths[1] as string)).toBe(false);
    expect(afterKill.reclaimed).toBe(2);
    expect(listTree(root).filter((rel) => rel.includes(held.instanceId))).toEqual([]);
    expect((await readdir(root)).sort()).toEqual([".instances"]);
  });
});

describe("regression: a stalled live gateway was judged dead", () => {
  const STALE_MS = 2000;

  it("a SIGSTOPped gateway silent for longer than staleMs keeps its leases: its process is alive, only frozen", async () => {
    const root = path.join(await tempDir(), "root");
    const { child, held, exited } = await holdLeases(root, 3, `stale-ms=${STALE_MS}`);
    const probe = createLivenessProbe({ root, staleMs: STALE_MS });
    const mine = await sweeper(root);
    expect(await probe.isAlive(held.instanceId)).toBe(true);

    process.kill(held.pid, "SIGSTOP"); // if the test fails while stopped, holdLeases' SIGKILL still ends it
    await until(async () => (await procStatField(held.pid, 3)) === "T", `process ${held.pid} to stop`);
    // The heartbeat has really stopped: the lock is older than staleMs, which alone used to mean death.
    await until(async () => (await lockAgeMs(root, held.instanceId)) > STALE_MS + 250, "the child's lock to go stale");

    // What an offline `ocgw workspaces gc` does, then what another gateway on the root does.
    for (const instance of [undefined, mine.instance]) {
      const result = await sweep({ root, instance, staleMs: STALE_MS });
      expect(result).toMatchObject({ reclaimed: 0, kept: 3, failed: 0, forgottenInstances: 0 });
      for (const entry of result.entries) expect(entry).toMatchObject({ instanceId: held.instanceId, action: "keep", reason: "owner instance is alive" });
    }
    expect(await probe.isAlive(held.instanceId)).toBe(true);
    for (const leasePath of held.paths) expect(existsSync(leasePath)).toBe(true);
    expect(existsSync(path.join(root, ".instances", `${held.instanceId}.json`))).toBe(true);
    expect(await lockAgeMs(root, held.instanceId)).toBeGreaterThan(STALE_MS);

    // Resumed, it refreshes its own lock and carries on; killed, it is reclaimed at once.
    process.kill(held.pid, "SIGCONT");
    await until(async () => (await lockAgeMs(root, held.instanceId)) < STALE_MS, "the resumed child to refresh its lock");
    expect((await sweep({ root, instance: mine.instance, staleMs: STALE_MS })).kept).toBe(3);
    await kill(child, exited);
    const afterKill = await sweep({ root, instance: mine.instance, staleMs: STALE_MS });
    expect(afterKill).toMatchObject({ reclaimed: 3, failed: 0 });
    for (const leasePath of held.paths) expect(existsSync(leasePath)).toBe(false);
  });
});
