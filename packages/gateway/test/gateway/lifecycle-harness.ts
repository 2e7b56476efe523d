/**
 * Harness for the lifecycle, crash and command-runner tests: in-process gateways on a per-test
 * temp dir (state dir and ephemeral root inside it, never the real /tmp/openclaw-<uid>), gateway
 * children started from the fixture, and helpers that read the ephemeral root and the ledger.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, readdir, readlink, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { onTestFinished } from "vitest";
import { type GatewayConfigInput, type GatewayHandle, type LeaseRecord, type Store, openStore, startGateway } from "../../src/index.ts";
import { type EventFrame, type Frame, type ResFrame, TOKEN, type TestClient, connectClient, withTimeout } from "../protocol/helpers.ts";

export { TOKEN };

/** Bound that only turns a hang into a failure (never a speed assertion). */
export const LONG_HANG_MS = 25_000;

export const CHILD_FIXTURE = fileURLToPath(new URL("../fixtures/gateway-child.ts", import.meta.url));

/** Names in an ephemeral root that belong to the machinery, not to leases. */
const MACHINERY = new Set([".instances", ".collector.lock"]);

export interface TestDirs {
  readonly base: string;
  readonly stateDir: string;
  readonly root: string;
}

/** A fresh `ocgw-life-*` directory under os.tmpdir(), removed when the test finishes. */
export async function makeDirs(): Promise<TestDirs> {
  const base = await mkdtemp(path.join(os.tmpdir(), "ocgw-life-"));
  onTestFinished(() => rm(base, { recursive: true, force: true, maxRetries: 3 }));
  return { base, stateDir: path.join(base, "state"), root: path.join(base, "root") };
}

export interface GatewaySettings {
  stateDir: string;
  root: string;
  idleTtlMs: number;
  implicit?: "ephemeral" | "agent" | "persistent" | "none";
  onStartup?: boolean;
  runner?: GatewayConfigInput["runner"];
  /** `workspace.ephemeral.staleMs`; unset: the default (1 min). */
  staleMs?: number;
  /** `workspace.gc.retainReleasedMs`; unset: the default (24 h). */
  retainReleasedMs?: number;
}

/** The config every test gateway (in-process or child) is started with. */
export function gatewayConfig(settings: GatewaySettings): GatewayConfigInput {
  return {
    stateDir: settings.stateDir,
    gateway: { port: 0, auth: { token: TOKEN } },
    workspace: {
      implicit: settings.implicit ?? "ephemeral",
      ephemeral: { root: settings.root, idleTtlMs: settings.idleTtlMs, ...(settings.staleMs === undefined ? {} : { staleMs: settings.staleMs }) },
      gc: { onStartup: settings.onStartup ?? true, intervalMs: 0, ...(settings.retainReleasedMs === undefined ? {} : { retainReleasedMs: settings.retainReleasedMs }) },
    },
    ...(settings.runner === undefined ? {} : { runner: settings.runner }),
  };
}

/** An in-process gateway, closed when the test finishes. Its log lines go to `log` (default: nowhere). */
export async function startTestGateway(settings: GatewaySettings, log: (line: string) => void = () => undefined): Promise<GatewayHandle> {
  const handle = await startGateway(gatewayConfig(settings), { log });
  onTestFinished(() => handle.close());
  return handle;
}

/** A connected operator with every scope (admin methods included). */
export async function connectAdmin(url: string): Promise<TestClient> {
  const { client } = await connectClient(url, { scopes: ["operator.admin"] });
  return client;
}

/** Entries of the ephemeral root other than `.instances` and `.collector.lock` (lease directories and trash). */
export async function leaseEntries(root: string): Promise<string[]> {
  const names = await readdir(root).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [] as string[];
    throw error;
  });
  return names.filter((name) => !MACHINERY.has(name)).sort();
}

/** Every lease row, oldest first. */
export function ledger(store: Store, sessionKey?: string): LeaseRecord[] {
  return store.listLeases(sessionKey === undefined ? {} : { sessionKey }).reverse();
}

/** Reads the ledger of a state dir whose gateway has stopped (or died), through a new connection. */
export function readLedger(stateDir: string): LeaseRecord[] {
  const store = openStore({ path: path.join(stateDir, "ocgw.sqlite") });
  try {
    return ledger(store);
  } finally {
    store.close();
  }
}

export const TERMINAL_STATES = new Set(["final", "error", "aborted"]);

export interface ChatPayload {
  runId: string;
  sessionKey: string;
  state: string;
  deltaText?: string;
  errorMessage?: string;
  errorKind?: string;
  errorCode?: string;
  [key: string]: unknown;
}

function isChat(frame: Frame): frame is EventFrame & { payload: ChatPayload } {
  return frame.type === "event" && frame.event === "chat";
}

/** The chat events received so far for a run, in order. */
export function chatEvents(client: TestClient, runId: string): ChatPayload[] {
  return client.received.filter(isChat).map((frame) => frame.payload).filter((payload) => payload.runId === runId);
}

/** The terminal chat event of a run, once it has arrived. */
export function terminalOf(client: TestClient, runId: string): ChatPayload | undefined {
  return chatEvents(client, runId).find((payload) => TERMINAL_STATES.has(payload.state));
}

/** Polls until `condition` holds; fails after `timeoutMs` (a hang bound only). */
export async function waitUntil(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = LONG_HANG_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Waits for the terminal chat event of every run and returns them by runId. */
export async function waitForTerminals(client: TestClient, runIds: readonly string[], timeoutMs = LONG_HANG_MS): Promise<Map<string, ChatPayload>> {
  const found = new Map<string, ChatPayload>();
  const wanted = new Set(runIds);
  let scanned = 0;
  await waitUntil(
    () => {
      for (; scanned < client.received.length; scanned += 1) {
        const frame = client.received[scanned] as Frame;
        if (isChat(frame) && wanted.has(frame.payload.runId) && TERMINAL_STATES.has(frame.payload.state) && !found.has(frame.payload.runId)) {
          found.set(frame.payload.runId, frame.payload);
        }
      }
      return found.size === wanted.size;
    },
    `terminal chat events for ${wanted.size} run(s) (have ${found.size})`,
    timeoutMs,
  );
  return found;
}

let requestCounter = 0;

/** Like TestClient.request, with the long hang bound (hundreds of requests may be in flight). */
export async function request(client: TestClient, method: string, params: Record<string, unknown>): Promise<ResFrame> {
  const id = `life-${++requestCounter}`;
  client.sendJson({ type: "req", id, method, params });
  return (await client.next((frame) => frame.type === "res" && frame.id === id, LONG_HANG_MS)) as ResFrame;
}

/** Calls a method and returns its payload (fails the test on an error response). */
export async function call<T = Record<string, unknown>>(client: TestClient, method: string, params: Record<string, unknown> = {}): Promise<T> {
  const res = await request(client, method, params);
  if (!res.ok) throw new Error(`${method} failed: ${JSON.stringify(res.error)}`);
  return res.payload as T;
}

/** Sends chat.send with a fresh idempotencyKey and returns its ack. */
export function chatSend(client: TestClient, sessionKey: string, message: string, extra: Record<string, unknown> = {}): Promise<{ runId: string; status: string }> {
  return call(client, "chat.send", { sessionKey, message, idempotencyKey: randomUUID(), ...extra });
}

/** chat.send, then waits for its terminal event. */
export async function chatTurn(client: TestClient, sessionKey: string, message: string, extra: Record<string, unknown> = {}): Promise<ChatPayload> {
  const ack = await chatSend(client, sessionKey, message, extra);
  const terminal = await waitForTerminals(client, [ack.runId]);
  return terminal.get(ack.runId) as ChatPayload;
}

/** True while a process with this pid exists and is not a zombie (dead but unreaped counts as gone). */
export async function processAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Pids (other than zombies, whose cwd cannot be read) whose working directory is `dir` or below it. */
export async function processesWithCwdUnder(dir: string): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const cwd = await readlink(`/proc/${name}/cwd`).catch(() => null);
    if (cwd !== null && (cwd === dir || cwd.startsWith(`${dir}/`))) found.push(Number(name));
  }
  return found;
}

export interface ChildGateway {
  readonly child: ChildProcess;
  readonly url: string;
  readonly pid: number;
  readonly instanceId: string;
  /** Resolves with the exit code (null after a signal) and signal once the child has exited and been reaped. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything the child wrote to stderr so far. */
  stderr(): string;
}

export interface SpawnChildOptions {
  /** The fixture to run (default {@link CHILD_FIXTURE}); it takes the config JSON as its first argument. */
  fixture?: string;
  /** Arguments after the config JSON. */
  args?: readonly string[];
}

/**
 * Starts the gateway fixture as a real child process and waits for its ready line. The child is
 * SIGKILLed by pid when the test finishes, unless it has exited already.
 */
export async function spawnGatewayChild(config: GatewayConfigInput, options: SpawnChildOptions = {}): Promise<ChildGateway> {
  const child = spawn(process.execPath, ["--conditions=ocgw-source", options.fixture ?? CHILD_FIXTURE, JSON.stringify(config), ...(options.args ?? [])], { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  let exitedYet = false;
  void exited.then(() => (exitedYet = true));
  onTestFinished(async () => {
    if (exitedYet || child.pid === undefined) return;
    try {
      process.kill(child.pid, "SIGKILL");
    } catch {
      // already gone
    }
    await withTimeout(exited, "the gateway child to exit after SIGKILL", 10_000);
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const ready = new Promise<{ url: string; pid: number; instanceId: string }>((resolve, reject) => {
    let buffered = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      const newline = buffered.indexOf("\n");
      if (newline >= 0) {
        try {
          resolve(JSON.parse(buffered.slice(0, newline)) as { url: string; pid: number; instanceId: string });
        } catch (error) {
          reject(new Error(`bad ready line from the gateway child: ${buffered.slice(0, newline)} (${String(error)})`));
        }
      }
    });
    void exited.then(({ code, signal }) => reject(new Error(`the gateway child exited before it was ready (code ${code}, signal ${signal}); stderr: ${stderr}`)));
  });
  const info = await withTimeout(ready, "the gateway child's ready line", 15_000);
  return { child, exited, stderr: () => stderr, ...info };
}
