/**
 * Runs the real OpenClaw gateway (the pinned npm package) in an isolated root: its own HOME,
 * TMPDIR, state dir and loopback port, token auth, heartbeat and channels off, a loopback mock
 * model. Started and stopped by PID only; the root is removed after the test.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { expect, onTestFinished } from "vitest";
import { type GatewayClient, connectGateway } from "../../src/index.ts";
import { OPENCLAW_BIN, OPENCLAW_READY_LINE, type OpenClawRoot, freePort, openClawConfig, openClawLayout, removeLifecycleLocks } from "./openclaw-process.ts";

export { type OpenClawRoot, openClawConfig } from "./openclaw-process.ts";

export const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
const READY_MS = 180_000;

/**
 * Registers a cleanup: `onTestFinished` by default; a `beforeAll` that shares one OpenClaw among
 * several tests passes its own (run by its `afterAll`).
 */
export type Defer = (cleanup: () => Promise<void>) => void;

/** A fresh isolated root, removed (with OpenClaw's lock files for it) when the test ends (or by `defer`). */
export async function openClawRoot(defer: Defer = onTestFinished): Promise<OpenClawRoot> {
  const root = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "ocgw-openclaw-")));
  defer(async () => {
    await removeLifecycleLocks(root);
    if (process.env["OCGW_KEEP_TEST_DIRS"] === undefined) await fs.rm(root, { recursive: true, force: true });
  });
  return openClawLayout(root);
}

export interface RunningOpenClaw {
  readonly pid: number;
  readonly url: string;
  readonly token: string;
  /** A connected operator client (closed by stop()). */
  readonly client: GatewayClient;
  /** SIGTERM by PID, then SIGKILL after 60 s; resolves when the process has exited. */
  stop(): Promise<void>;
}

async function waitReady(child: ChildProcess, output: () => string, url: string, token: string): Promise<GatewayClient> {
  const deadline = Date.now() + READY_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`openclaw exited during start (${child.exitCode ?? child.signalCode}):\n${output().slice(-4000)}`);
    if (OPENCLAW_READY_LINE.test(output())) {
      try {
        // OpenClaw answers sessions.delete in 0.2–3 s on an idle machine; a loaded one (CI) takes longer.
        return await connectGateway({ url, token, scopes: ["operator.read", "operator.write", "operator.admin"], timeoutMs: 60_000 });
      } catch {
        // Not accepting yet.
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`openclaw was not ready within ${READY_MS / 1000} s:\n${output().slice(-4000)}`);
}

/**
 * Writes openclaw.json (with `extra` top-level blocks, such as `plugins`) and starts `openclaw
 * gateway run` in the root; resolves once a client is connected. Stopped when the test ends (or by `defer`).
 */
export async function startOpenClaw(oc: OpenClawRoot, modelBaseUrl: string, agents: Record<string, unknown>, defer: Defer = onTestFinished, extra: Record<string, unknown> = {}): Promise<RunningOpenClaw> {
  const port = await freePort();
  const token = randomBytes(24).toString("hex");
  await fs.writeFile(oc.configPath, `${JSON.stringify(openClawConfig(oc, port, token, modelBaseUrl, agents, extra), null, 2)}\n`);
  const child = spawn(process.execPath, [OPENCLAW_BIN, "gateway", "run"], { cwd: oc.root, env: oc.env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, "exit");
  const connected: { client?: GatewayClient } = {};
  const stop = async (): Promise<void> => {
    await connected.client?.close().catch(() => undefined);
    if (child.exitCode !== null || child.signalCode !== null) return;
    process.kill(child.pid as number, "SIGTERM");
    const timer = setTimeout(() => child.exitCode === null && child.signalCode === null && process.kill(child.pid as number, "SIGKILL"), 60_000);
    await exited;
    clearTimeout(timer);
  };
  defer(stop);
  const url = `ws://127.0.0.1:${port}`;
  connected.client = await waitReady(child, () => output, url, token);
  return { pid: child.pid as number, url, token, client: connected.client, stop };
}

/** Sends one message on each key and waits until each run has ended (whatever its outcome). */
export async function chatOn(client: GatewayClient, keys: readonly string[]): Promise<void> {
  const runs: string[] = [];
  for (const key of keys) {
    const runId = `run-${randomBytes(6).toString("hex")}`;
    await client.call("chat.send", { sessionKey: key, message: `hello from ${key}`, idempotencyKey: runId });
    runs.push(runId);
  }
  for (const runId of runs) await client.call("agent.wait", { runId, timeoutMs: 120_000 }, { timeoutMs: 130_000 });
}

/** The entries of `<stateDir>/sandboxes`, as full paths, sorted. */
export async function sandboxDirs(oc: OpenClawRoot): Promise<string[]> {
  return (await fs.readdir(path.join(oc.stateDir, "sandboxes")).catch(() => [] as string[])).map((name) => path.join(oc.stateDir, "sandboxes", name)).sort();
}

/** Which directory each key's first message made, seen by watching the sandboxes dir (not computed by the code under test). */
export async function sandboxPerKey(oc: OpenClawRoot, send: (key: string) => Promise<void>, keys: readonly string[]): Promise<Map<string, string>> {
  const byKey = new Map<string, string>();
  for (const key of keys) {
    const before = new Set(await sandboxDirs(oc));
    await send(key);
    const made = (await sandboxDirs(oc)).filter((dir) => !before.has(dir));
    expect(made, `the one sandbox workspace made for ${key}`).toHaveLength(1);
    byKey.set(key, made[0] as string);
  }
  return byKey;
}

/** sha256 of every file below `dir` (a link by its target), by path: the state dir before and after. */
export async function hashFiles(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    const full = path.join(entry.parentPath, entry.name);
    if (entry.isSymbolicLink()) out.set(full, `link:${await fs.readlink(full)}`);
    else if (entry.isFile()) out.set(full, createHash("sha256").update(await fs.readFile(full)).digest("hex"));
    else if (entry.isDirectory()) out.set(`${full}/`, "dir");
  }
  return out;
}

export interface OcgwResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the real `ocgw` bin (a child process) with OpenClaw's environment. */
export async function ocgw(oc: OpenClawRoot, args: readonly string[]): Promise<OcgwResult> {
  const child = spawn(process.execPath, ["--conditions=ocgw-source", path.join(REPO, "packages", "cli", "src", "bin.ts"), ...args], { cwd: oc.root, env: oc.env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, "exit")) as [number | null];
  return { code: code ?? -1, stdout, stderr };
}

/** One line per case for the CI log: what it planted, and what the reclaim removed and kept. */
export function report(name: string, counts: { planted: number; removed: number; kept: number }): void {
  console.log(`[openclaw suite] ${name}: planted ${counts.planted}, removed ${counts.removed}, kept ${counts.kept}`);
}

/** Regular files below `dir` and their total size in bytes (links and directories not counted). */
export async function treeSize(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    files++;
    bytes += (await fs.lstat(path.join(entry.parentPath, entry.name))).size;
  }
  return { files, bytes };
}
