/**
 * The real system of the model-based lifecycle test: one gateway at a time on a per-sequence temp
 * dir (in-process, or a child process in the long form), one recording client per gateway
 * incarnation, the `sh -c` runner whose message picks what a run does, and the snapshots the
 * invariants read (ledger, ephemeral root, the cwd of every process).
 */
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, readlink, realpath, rm, writeFile } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type GatewayConfigInput, type GatewayHandle, type LeaseRecord, type Store, openStore, startGateway } from "../../src/index.ts";
import { type ChildGateway, connectAdmin, spawnGatewayChild } from "../gateway/lifecycle-harness.ts";
import { type Frame, TOKEN, type TestClient, withTimeout } from "../protocol/helpers.ts";

/** The session keys a sequence plays with: two implicit (ephemeral) sessions and the agent's main session (mode "agent"). */
export const KEYS = ["alpha", "beta", "main"] as const;
export type Key = (typeof KEYS)[number];

export function canonicalKey(key: Key): string {
  return `agent:main:${key}`;
}

/**
 * What the runner does with a message: exit 0; exit 3; sleep past the run's timeout; wait for its
 * gate file; or start a background job in its cwd that outlives the run (exit 0), which only the
 * release of the session's workspace (or the gateway's stop) may end.
 */
export type Behaviour = "ok" | "fail" | "hang" | "slow" | "spawn";

/** A session's workspace mode as far as the model can tell; "uncertain" after racing requests. */
export type SessionMode = "absent" | "ephemeral" | "none" | "agent" | "uncertain";

/** `chat.send` timeoutMs of a `hang` run (`agent` takes whole seconds: 1). */
export const HANG_TIMEOUT_MS = 150;

/** Bound that only turns a hang of the system into a failure. */
export const HANG_BOUND_MS = 40_000;

/**
 * The command runner's program. It prints its pid and working directory first (the invariants read
 * them from the deltas), then acts on the message (see {@link Behaviour}). A gate is a file named after the run in
 * $OCGW_MODEL_GATES; a slow run polls for it (bounded, so nothing outlives a test by much).
 */
export const RUNNER_SCRIPT = [
  'msg=$(cat); here=$(pwd -P); printf "pid=%s cwd=%s\\n" "$$" "$here"',
  'case "$msg" in',
  '  ok) if [ "$here" != / ]; then echo ok > model-out.txt; fi; echo ok ;;',
  '  fail) echo "model: failing on purpose" >&2; exit 3 ;;',
  "  hang) sleep 30; echo 'outlived its timeout' ;;",
  "  spawn) (sleep 30 </dev/null >/dev/null 2>&1 &); echo spawned ;;",
  '  slow\\ *) gate="$OCGW_MODEL_GATES/${msg#slow }"; i=0',
  '    while [ ! -e "$gate" ]; do i=$((i+1)); if [ "$i" -gt 600 ]; then echo "gate never opened" >&2; exit 4; fi; sleep 0.1; done',
  "    echo slow ;;",
  '  *) echo "unknown message: $msg" >&2; exit 5 ;;',
  "esac",
].join("\n");

export interface SequenceSettings {
  /** `workspace.ephemeral.idleTtlMs`. */
  readonly idleTtlMs: number;
  /** `session.maxQueuedRuns`. */
  readonly maxQueuedRuns: number;
}

/** One client connection, to one gateway incarnation. */
export interface Connection {
  readonly incarnation: number;
  readonly client: TestClient;
  /** How many frames had arrived when the socket closed because its gateway stopped; undefined while it runs. */
  cutAt: number | undefined;
}

export interface Incarnation {
  readonly index: number;
  readonly kind: "inproc" | "child";
  readonly instanceId: string;
  readonly handle: GatewayHandle | undefined;
  readonly child: ChildGateway | undefined;
  readonly conn: Connection;
  /** How it stopped; undefined while it runs. */
  stopped: "graceful" | "sigkill" | undefined;
}

export interface RunInfo {
  readonly runId: string;
  readonly kind: "chat" | "agent";
  readonly key: string;
  readonly behaviour: Behaviour;
  readonly workspace: boolean;
  /** The session's mode as the model knew it when the run was sent. */
  readonly mode: SessionMode;
}

export interface SentRequest {
  readonly id: string;
  /** Position in {@link ModelSystem.requests}: the order requests were sent in. */
  readonly seq: number;
  readonly step: number;
  readonly method: string;
  /** The canonical session key it is about, if any. */
  readonly key: string | undefined;
  readonly params: Record<string, unknown>;
  readonly conn: Connection;
  /** How many frames had arrived on the connection when it was sent. */
  readonly sentAt: number;
  readonly pipelined: boolean;
  readonly run: RunInfo | undefined;
}

/** What one look at the world saw: ledger, root entries, processes in the root, ledger again. */
export interface Snapshot {
  readonly before: readonly LeaseRecord[];
  readonly entries: readonly string[];
  readonly processes: readonly ProcessInRoot[];
  readonly after: readonly LeaseRecord[];
}

export interface ModelSystem {
  readonly settings: SequenceSettings;
  readonly long: boolean;
  readonly base: string;
  readonly stateDir: string;
  /** The ephemeral root (a real path). */
  readonly root: string;
  /** The default agent's persistent workspace, where the main session's runs start. */
  readonly agentWorkspace: string;
  /** Where gate files go; every runner process carries it in OCGW_MODEL_GATES. */
  readonly gates: string;
  readonly incarnations: Incarnation[];
  readonly requests: SentRequest[];
  /** Executed commands and notable events, for the failure report. */
  readonly trace: string[];
  /** Index of the command being run (1-based), for the trace. */
  step: number;
  current(): Incarnation;
  send(method: string, params: Record<string, unknown>, options?: { key?: string; run?: RunInfo; pipelined?: boolean }): SentRequest;
  /** The nth response (0-based) to a request; undefined if its connection was cut first. */
  response(request: SentRequest, nth?: number): Promise<Frame | undefined>;
  openGate(runId: string): Promise<void>;
  /** Stops the current gateway: close() (SIGTERM for a child), or SIGKILL by pid (a child only). */
  stop(how: "graceful" | "sigkill"): Promise<void>;
  /** Starts the next gateway on the same state dir and root, and connects a new client. */
  start(kind: "inproc" | "child"): Promise<void>;
  ledger(): LeaseRecord[];
  snapshot(): Promise<Snapshot>;
  /** Ends what is left (gateway, processes a crash orphaned, temp dir). Never throws. */
  dispose(): Promise<void>;
}

/** Entries of the root that are machinery rather than lease directories. */
export function isMachinery(name: string): boolean {
  return name === ".instances" || name === ".collector.lock" || name.startsWith(".trash-");
}

/** A process whose cwd is in the root; a runner's process also says which run and workspace it was started for. */
export interface ProcessInRoot {
  readonly pid: number;
  readonly cwd: string;
  /** OCGW_RUN_ID and OCGW_WORKSPACE from its environment (runner processes only). */
  readonly runId: string | undefined;
  readonly workspace: string | undefined;
}

/** Every process whose cwd is `dir` or below (a deleted cwd included), with its runner variables. */
export async function processesUnder(dir: string): Promise<ProcessInRoot[]> {
  const found: ProcessInRoot[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const link = await readlink(`/proc/${name}/cwd`).catch(() => null);
    if (link === null) continue;
    const cwd = link.endsWith(" (deleted)") ? link.slice(0, -" (deleted)".length) : link;
    if (cwd !== dir && !cwd.startsWith(`${dir}/`)) continue;
    const environ = (await readFile(`/proc/${name}/environ`, "utf8").catch(() => "")).split("\0");
    const variable = (key: string): string | undefined => environ.find((entry) => entry.startsWith(`${key}=`))?.slice(key.length + 1);
    found.push({ pid: Number(name), cwd, runId: variable("OCGW_RUN_ID"), workspace: variable("OCGW_WORKSPACE") });
  }
  return found;
}

/** Pids of the runner processes of one sequence (their environment names its gates directory), wherever their cwd. */
export async function runnerProcesses(gates: string): Promise<number[]> {
  const marker = `OCGW_MODEL_GATES=${gates}`;
  const found: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const environ = await readFile(`/proc/${name}/environ`, "utf8").catch(() => "");
    if (environ.split("\0").includes(marker)) found.push(Number(name));
  }
  return found;
}

function gatewayConfig(settings: SequenceSettings, dirs: { stateDir: string; root: string; gates: string }): GatewayConfigInput {
  return {
    stateDir: dirs.stateDir,
    gateway: { port: 0, auth: { token: TOKEN } },
    session: { maxQueuedRuns: settings.maxQueuedRuns },
    workspace: {
      implicit: "ephemeral",
      ephemeral: { root: dirs.root, idleTtlMs: settings.idleTtlMs },
      gc: { onStartup: true, intervalMs: 0 },
    },
    runner: { kind: "command", timeoutMs: 60_000, command: { argv: ["sh", "-c", RUNNER_SCRIPT], env: { OCGW_MODEL_GATES: dirs.gates } } },
  };
}

export async function createModelSystem(settings: SequenceSettings, long: boolean): Promise<ModelSystem> {
  const base = await realpath(await mkdtemp(path.join(os.tmpdir(), "ocgw-model-")));
  const stateDir = path.join(base, "state");
  const root = path.join(base, "root");
  const gates = path.join(base, "gates");
  await mkdir(gates);
  const config = gatewayConfig(settings, { stateDir, root, gates });
  const incarnations: Incarnation[] = [];
  const requests: SentRequest[] = [];
  const trace: string[] = [];
  let reader: Store | undefined;
  let requestCounter = 0;

  async function start(kind: "inproc" | "child"): Promise<Incarnation> {
    const index = incarnations.length;
    let handle: GatewayHandle | undefined;
    let child: ChildGateway | undefined;
    let url: string;
    let instanceId: string;
    if (kind === "inproc") {
      handle = await startGateway(config, { log: (line) => trace.push(`  [gateway ${index}] ${line}`) });
      url = handle.url;
      instanceId = handle.instanceId;
    } else {
      child = await spawnGatewayChild(config);
      url = child.url;
      instanceId = child.instanceId;
    }
    const client = await connectAdmin(url);
    const incarnation: Incarnation = { index, kind, instanceId, handle, child, conn: { incarnation: index, client, cutAt: undefined }, stopped: undefined };
    incarnations.push(incarnation);
    reader ??= openStore({ path: path.join(stateDir, "ocgw.sqlite") });
    trace.push(`  gateway ${index} started (${kind}, instance ${instanceId})`);
    return incarnation;
  }

  async function stopCurrent(how: "graceful" | "sigkill"): Promise<void> {
    const incarnation = system.current();
    if (incarnation.handle !== undefined) {
      if (how === "sigkill") throw new Error("an in-process gateway cannot be SIGKILLed");
      await withTimeout(incarnation.handle.close("model restart"), "close() of the gateway", HANG_BOUND_MS);
    } else if (incarnation.child !== undefined) {
      process.kill(incarnation.child.pid, how === "graceful" ? "SIGTERM" : "SIGKILL");
      const exit = await withTimeout(incarnation.child.exited, "the gateway child to exit", HANG_BOUND_MS);
      const expected = how === "graceful" ? { code: 0, signal: null } : { code: null, signal: "SIGKILL" };
      if (exit.code !== expected.code || exit.signal !== expected.signal) {
        throw new Error(`the gateway child exited with ${JSON.stringify(exit)} after ${how}, expected ${JSON.stringify(expected)}; stderr:\n${incarnation.child.stderr()}`);
      }
    }
    await withTimeout(incarnation.conn.client.closed, "the client socket to close", HANG_BOUND_MS);
    incarnation.conn.cutAt = incarnation.conn.client.received.length;
    incarnation.stopped = how;
    trace.push(`  gateway ${incarnation.index} stopped (${how})`);
  }

  const system: ModelSystem = {
    settings,
    long,
    base,
    stateDir,
    root,
    agentWorkspace: path.join(stateDir, "workspace"),
    gates,
    incarnations,
    requests,
    trace,
    step: 0,
    current() {
      const last = incarnations.at(-1);
      if (last === undefined) throw new Error("no gateway started");
      return last;
    },
    send(method, params, options = {}) {
      const conn = system.current().conn;
      const request: SentRequest = {
        id: `m${++requestCounter}`,
        seq: requests.length,
        step: system.step,
        method,
        key: options.key,
        params,
        conn,
        sentAt: conn.client.received.length,
        pipelined: options.pipelined ?? false,
        run: options.run,
      };
      requests.push(request);
      conn.client.sendJson({ type: "req", id: request.id, method, params });
      return request;
    },
    async response(request, nth = 0) {
      const { client } = request.conn;
      const deadline = Date.now() + HANG_BOUND_MS;
      for (;;) {
        let seen = 0;
        for (const frame of client.received) {
          if (frame.type === "res" && frame.id === request.id && seen++ === nth) return frame;
        }
        if (request.conn.cutAt !== undefined) return undefined;
        if (Date.now() > deadline) throw new Error(`no response #${nth + 1} to ${request.method} ${request.id} within ${HANG_BOUND_MS} ms`);
        await sleep(5);
      }
    },
    async openGate(runId) {
      await writeFile(path.join(gates, runId), "open\n");
    },
    stop: stopCurrent,
    async start(kind) {
      await start(kind);
    },
    ledger() {
      if (reader === undefined) throw new Error("no ledger yet");
      return reader.listLeases({}).reverse();
    },
    async snapshot() {
      const before = system.ledger();
      const entries = (await readdir(root).catch(() => [] as string[])).sort();
      const processes = await processesUnder(root);
      const after = system.ledger();
      return { before, entries, processes, after };
    },
    async dispose() {
      const running = incarnations.at(-1);
      if (running !== undefined && running.stopped === undefined) {
        if (running.handle !== undefined) await running.handle.close("model dispose").catch(() => undefined);
        if (running.child !== undefined) {
          try {
            process.kill(running.child.pid, "SIGKILL");
          } catch {
            // gone already
          }
          await withTimeout(running.child.exited, "the gateway child to exit", 10_000).catch(() => undefined);
        }
      }
      for (const incarnation of incarnations) if (incarnation.conn.client.ws.readyState !== incarnation.conn.client.ws.CLOSED) incarnation.conn.client.ws.terminate();
      // A SIGKILLed gateway leaves its runner's process groups behind; they were started by this test.
      for (const pid of await runnerProcesses(gates).catch(() => [])) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
      reader?.close();
      reader = undefined;
      await rm(base, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
    },
  };

  try {
    await start("inproc");
  } catch (error) {
    await system.dispose();
    throw error;
  }
  return system;
}

/** A fresh run id (the chat.send idempotencyKey). */
export function newRunId(): string {
  return randomUUID();
}

/** The lease row whose directory is `dir`, if any. */
export function rowByPath(rows: readonly LeaseRecord[], dir: string): LeaseRecord | undefined {
  return rows.find((row) => row.path === dir);
}

export function exists(dir: string): boolean {
  return existsSync(dir);
}
