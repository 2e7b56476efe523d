/**
 * The invariants of the model-based lifecycle test, over what the client recorded (every frame, in
 * arrival order, per connection) and what the world holds (ledger, ephemeral root, /proc).
 *
 * After every step (runs may be in flight):
 * - every response answers a request sent on its connection, at most once (`agent`: accepted, then
 *   its final), with a legitimate shape; RUN_QUEUE_FULL only when the session had at least
 *   maxQueuedRuns + 1 runs acked and not ended;
 * - no event of a run before the ack of the request that started it; at most one terminal chat
 *   event per run, nothing of the run after it; `agent`'s final after the terminal event and in
 *   agreement with it; `agent.wait` reporting an end only after the terminal event;
 * - a `sessions.delete`/`sessions.reset` answers only once every run of its session acked before
 *   it was sent has ended; `chat.abort` names only runs of its session that had not ended;
 * - every run starts where its session's mode says (its own ephemeral lease, the agent's
 *   workspace, or `/` without one);
 * - at most one acquiring/live lease per session among running gateways; every directory in the
 *   root has a ledger row that is not released; a released row's directory is gone; no process
 *   has its cwd in a released lease or in trash; a gracefully stopped gateway left no open row.
 *
 * At quiescence (every run ended, idle timers run out, a collection done) the strict forms: every
 * request answered, every run exactly one terminal event of the kind its message and the
 * operator's actions allow, the root holds exactly the live leases, nothing open but live rows of
 * the running gateway, no runner process left.
 */
import * as path from "node:path";
import type { LeaseRecord } from "../../src/index.ts";
import type { Frame } from "../protocol/helpers.ts";
import { type Connection, type ModelSystem, type RunInfo, type SentRequest, type SessionMode, type Snapshot, exists, isMachinery } from "./system.ts";

export class InvariantViolation extends Error {
  override readonly name = "InvariantViolation";
}

interface ChatPayload {
  runId: string;
  sessionKey: string;
  state: string;
  deltaText?: string;
  errorKind?: string;
  errorCode?: string;
}

const TERMINAL = new Set(["final", "aborted", "error"]);
const OPEN_STATES = new Set(["acquiring", "live", "releasing", "failed"]);

/** What a connection received, indexed. */
export interface ConnView {
  readonly conn: Connection;
  readonly frames: readonly Frame[];
  readonly requests: readonly SentRequest[];
  readonly byId: ReadonlyMap<string, SentRequest>;
  /** Frame indexes of the responses to each request id. */
  readonly responses: ReadonlyMap<string, number[]>;
  /** Frame indexes of the chat and agent events of each run id. */
  readonly events: ReadonlyMap<string, number[]>;
  /** Frame indexes of the terminal chat events of each run id. */
  readonly terminals: ReadonlyMap<string, number[]>;
  /** The ack frame index of each run admitted on this connection. */
  readonly acks: ReadonlyMap<string, number>;
  /** Runs refused with RUN_QUEUE_FULL. */
  readonly refused: ReadonlySet<string>;
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

function errorCode(frame: Frame | undefined): string | undefined {
  const details = frame?.error?.details as { code?: unknown } | undefined;
  return typeof details?.code === "string" ? details.code : undefined;
}

function payloadOf(frame: Frame | undefined): Record<string, unknown> {
  return (frame?.payload ?? {}) as Record<string, unknown>;
}

export function viewOf(system: ModelSystem, conn: Connection): ConnView {
  const frames = conn.client.received.slice();
  const requests = system.requests.filter((request) => request.conn === conn);
  const byId = new Map(requests.map((request) => [request.id, request]));
  const responses = new Map<string, number[]>();
  const events = new Map<string, number[]>();
  const terminals = new Map<string, number[]>();
  frames.forEach((frame, index) => {
    if (frame.type === "res" && typeof frame.id === "string") push(responses, frame.id, index);
    if (frame.type === "event" && (frame.event === "chat" || frame.event === "agent")) {
      const payload = frame.payload as ChatPayload;
      push(events, payload.runId, index);
      if (frame.event === "chat" && TERMINAL.has(payload.state)) push(terminals, payload.runId, index);
    }
  });
  const acks = new Map<string, number>();
  const refused = new Set<string>();
  for (const request of requests) {
    if (request.run === undefined) continue;
    const first = responses.get(request.id)?.[0];
    if (first === undefined) continue;
    const frame = frames[first];
    if (frame?.ok === true) acks.set(request.run.runId, first);
    else if (errorCode(frame) === "RUN_QUEUE_FULL") refused.add(request.run.runId);
  }
  return { conn, frames, requests, byId, responses, events, terminals, acks, refused };
}

/** The kind of a terminal chat event: final, aborted, timeout, or error:<errorCode>. */
export function terminalKind(payload: ChatPayload): string {
  if (payload.state !== "error") return payload.state;
  return payload.errorKind === "timeout" ? "timeout" : `error:${payload.errorCode ?? "none"}`;
}

function terminalPayload(view: ConnView, runId: string): { index: number; payload: ChatPayload } | undefined {
  const index = view.terminals.get(runId)?.[0];
  return index === undefined ? undefined : { index, payload: view.frames[index]?.payload as ChatPayload };
}

/** Runs of a session admitted on the connection before frame `at` and not ended before it. */
function unendedRuns(view: ConnView, key: string, at: number): string[] {
  const found: string[] = [];
  for (const request of view.requests) {
    const run = request.run;
    if (run === undefined || run.key !== key) continue;
    const ack = view.acks.get(run.runId);
    if (ack === undefined || ack >= at) continue;
    const terminal = view.terminals.get(run.runId)?.[0];
    if (terminal === undefined || terminal > at) found.push(run.runId);
  }
  return found;
}

/**
 * Runs of a session that may have been in its lane when `refused` was refused at frame `at`: sent
 * on the connection before that answer arrived, admitted (whenever the ack came: pipelined acks
 * may arrive in another order), and not ended before it. Counting generously keeps the check sound.
 */
function possiblyQueued(view: ConnView, key: string, refused: SentRequest, at: number): string[] {
  const found: string[] = [];
  for (const request of view.requests) {
    const run = request.run;
    if (run === undefined || request === refused || run.key !== key || request.sentAt > at || !view.acks.has(run.runId)) continue;
    const terminal = view.terminals.get(run.runId)?.[0];
    if (terminal === undefined || terminal > at) found.push(run.runId);
  }
  return found;
}

/** The run (on any connection) with this id. */
function findRun(system: ModelSystem, runId: string): SentRequest | undefined {
  return system.requests.find((request) => request.run?.runId === runId);
}

/** The agent final reply a terminal event implies: [ok, payload.status, error details.code]. */
function expectedAgentFinal(kind: string): [boolean, string, string | undefined] {
  if (kind === "final") return [true, "ok", undefined];
  if (kind === "aborted") return [true, "timeout", undefined];
  if (kind === "timeout") return [false, "timeout", "RUNNER_TIMEOUT"];
  return [false, "error", "RUNNER_FAILED"];
}

/** The agent.wait status a terminal event implies. */
function expectedWaitStatus(kind: string): string {
  return kind === "final" ? "ok" : kind === "aborted" || kind === "timeout" ? "timeout" : "error";
}

function checkResponses(system: ModelSystem, view: ConnView, out: string[]): void {
  for (const [id, indexes] of view.responses) {
    // The handshake's connect request is not one of ours.
    if (!id.startsWith("m")) continue;
    const request = view.byId.get(id);
    if (request === undefined) {
      out.push(`response #${indexes[0]} to a request never sent on this connection (id ${id})`);
      continue;
    }
    const label = `${request.method} ${id} (step ${request.step})`;
    const first = view.frames[indexes[0] as number];
    const max = request.method === "agent" && first?.ok === true ? 2 : 1;
    if (indexes.length > max) out.push(`${label} got ${indexes.length} responses, at most ${max} allowed`);
    const firstPayload = payloadOf(first);
    switch (request.method) {
      case "chat.send":
      case "agent": {
        const run = request.run as RunInfo;
        const status = request.method === "chat.send" ? "started" : "accepted";
        if (first?.ok === true) {
          if (firstPayload["runId"] !== run.runId || firstPayload["status"] !== status) out.push(`${label} ack is ${JSON.stringify(firstPayload)}, expected runId ${run.runId} status ${status}`);
        } else if (errorCode(first) === "RUN_QUEUE_FULL") {
          const unended = possiblyQueued(view, run.key, request, indexes[0] as number);
          if (unended.length < system.settings.maxQueuedRuns + 1) {
            out.push(`${label} refused with RUN_QUEUE_FULL while only ${unended.length} run(s) of ${run.key} were admitted and not ended (maxQueuedRuns ${system.settings.maxQueuedRuns})`);
          }
        } else out.push(`${label} failed: ${JSON.stringify(first?.error)}`);
        if (request.method === "agent" && indexes.length > 1) checkAgentFinal(view, request, indexes[1] as number, out);
        break;
      }
      case "chat.abort": {
        if (first?.ok !== true || firstPayload["ok"] !== true || !Array.isArray(firstPayload["runIds"])) {
          out.push(`${label} answered ${JSON.stringify(first)}`);
          break;
        }
        const runIds = firstPayload["runIds"] as string[];
        const only = request.params["runId"];
        for (const runId of runIds) {
          const run = findRun(system, runId)?.run;
          if (only !== undefined && runId !== only) out.push(`${label} for run ${String(only)} aborted another run ${runId}`);
          if (run === undefined || run.key !== request.key) out.push(`${label} aborted run ${runId}, not a run of ${request.key}`);
          const terminal = view.terminals.get(runId)?.[0];
          if (terminal !== undefined && terminal < request.sentAt) out.push(`${label} aborted run ${runId}, which had ended (terminal #${terminal}) before the abort was sent (#${request.sentAt})`);
        }
        if (firstPayload["aborted"] !== runIds.length > 0) out.push(`${label}: aborted ${String(firstPayload["aborted"])} with runIds ${JSON.stringify(runIds)}`);
        break;
      }
      case "sessions.delete":
      case "sessions.reset": {
        if (first?.ok !== true || firstPayload["ok"] !== true) {
          out.push(`${label} answered ${JSON.stringify(first)}`);
          break;
        }
        // It aborted and awaited every run of the session admitted before it was sent.
        const answeredAt = indexes[0] as number;
        for (const runId of unendedRuns(view, request.key as string, request.sentAt)) {
          const terminal = view.terminals.get(runId)?.[0];
          if (terminal === undefined || terminal > answeredAt) out.push(`${label} answered (#${answeredAt}) before run ${runId}, admitted before it was sent, had ended (terminal ${terminal === undefined ? "none" : `#${terminal}`})`);
        }
        break;
      }
      case "workspaces.gc":
        if (first?.ok !== true && errorCode(first) !== "WS_GC_BUSY") out.push(`${label} failed: ${JSON.stringify(first?.error)}`);
        break;
      case "agent.wait":
        checkWait(system, view, request, indexes[0] as number, out);
        break;
      default:
        if (first?.ok !== true) out.push(`${label} failed: ${JSON.stringify(first?.error)}`);
    }
  }
}

function checkAgentFinal(view: ConnView, request: SentRequest, finalAt: number, out: string[]): void {
  const run = request.run as RunInfo;
  const terminal = terminalPayload(view, run.runId);
  if (terminal === undefined || terminal.index > finalAt) {
    out.push(`agent ${request.id}: final reply #${finalAt} before the run's terminal chat event (${terminal === undefined ? "none" : `#${terminal.index}`})`);
    return;
  }
  const frame = view.frames[finalAt];
  const payload = payloadOf(frame);
  const [ok, status, code] = expectedAgentFinal(terminalKind(terminal.payload));
  if (frame?.ok !== ok || payload["status"] !== status || errorCode(frame) !== code || payload["runId"] !== run.runId) {
    out.push(`agent ${request.id}: final reply ${JSON.stringify({ ok: frame?.ok, payload, error: frame?.error })} disagrees with its terminal event ${JSON.stringify(terminal.payload)}`);
  }
}

function checkWait(system: ModelSystem, view: ConnView, request: SentRequest, at: number, out: string[]): void {
  const frame = view.frames[at];
  const runId = request.params["runId"] as string;
  const target = findRun(system, runId);
  const label = `agent.wait ${request.id} for run ${runId} (step ${request.step})`;
  if (frame?.ok !== true) {
    const everAcked = target !== undefined && viewOf(system, target.conn).acks.has(runId);
    if (errorCode(frame) !== "RUN_NOT_FOUND" || everAcked) out.push(`${label} failed: ${JSON.stringify(frame?.error)}`);
    return;
  }
  const payload = payloadOf(frame);
  if (!["ok", "error", "timeout"].includes(payload["status"] as string)) out.push(`${label}: status ${String(payload["status"])}`);
  if (payload["endedAt"] === undefined) {
    if (payload["status"] !== "timeout") out.push(`${label}: ${JSON.stringify(payload)} without endedAt`);
    return;
  }
  if (target === undefined) {
    out.push(`${label}: a run that was never sent ended`);
    return;
  }
  const targetView = target.conn === view.conn ? view : viewOf(system, target.conn);
  if (!targetView.acks.has(runId)) out.push(`${label}: a run that was never admitted ended (${JSON.stringify(payload)})`);
  const terminal = terminalPayload(targetView, runId);
  if (target.conn === view.conn && (terminal === undefined || terminal.index > at)) {
    out.push(`${label}: reports the end (#${at}) before the run's terminal chat event (${terminal === undefined ? "none" : `#${terminal.index}`})`);
  }
  if (terminal !== undefined) {
    const kind = terminalKind(terminal.payload);
    const status = expectedWaitStatus(kind);
    if (payload["status"] !== status || (kind === "aborted") !== (payload["stopReason"] === "rpc")) out.push(`${label}: ${JSON.stringify(payload)} disagrees with the terminal event ${JSON.stringify(terminal.payload)}`);
  }
}

function checkEvents(view: ConnView, out: string[]): void {
  for (const [runId, indexes] of view.events) {
    const ack = view.acks.get(runId);
    if (ack === undefined) {
      out.push(`event #${indexes[0]} of run ${runId}, which was never admitted on this connection${view.refused.has(runId) ? " (refused with RUN_QUEUE_FULL)" : ""}`);
      continue;
    }
    const early = indexes.find((index) => index < ack);
    if (early !== undefined) out.push(`event #${early} of run ${runId} before the ack of its request (#${ack})`);
  }
  for (const [runId, indexes] of view.terminals) {
    if (indexes.length > 1) out.push(`run ${runId} has ${indexes.length} terminal chat events (#${indexes.join(", #")})`);
    const first = indexes[0] as number;
    const after = (view.events.get(runId) ?? []).find((index) => index > first && view.frames[index]?.event === "chat");
    if (after !== undefined) out.push(`chat event #${after} of run ${runId} after its terminal event #${first}`);
  }
  for (const [runId, indexes] of view.events) {
    const ends = indexes.filter((index) => {
      const payload = view.frames[index]?.payload as { stream?: string; data?: { phase?: string } };
      return view.frames[index]?.event === "agent" && payload.stream === "lifecycle" && (payload.data?.phase === "end" || payload.data?.phase === "error");
    });
    if (ends.length > 1) out.push(`run ${runId} has ${ends.length} agent lifecycle end events`);
  }
}

/** Where the run's program said it started ("pid=… cwd=…", its first line of output). */
function runCwd(view: ConnView, runId: string): string | undefined {
  let text = "";
  for (const index of view.events.get(runId) ?? []) {
    const frame = view.frames[index];
    const payload = frame?.payload as ChatPayload;
    if (frame?.event === "chat" && payload.state === "delta") text += payload.deltaText ?? "";
  }
  return /^pid=\d+ cwd=(.*)$/m.exec(text)?.[1];
}

function checkCwds(system: ModelSystem, view: ConnView, ledger: readonly LeaseRecord[], out: string[]): void {
  for (const request of view.requests) {
    const run = request.run;
    if (run === undefined) continue;
    const cwd = runCwd(view, run.runId);
    if (cwd === undefined) continue;
    const row = cwd.startsWith(`${system.root}/`) ? ledger.find((candidate) => candidate.path === path.join(system.root, path.relative(system.root, cwd).split(path.sep)[0] as string)) : undefined;
    const inOwnLease = row !== undefined && row.sessionKey === run.key && row.kind === "ephemeral";
    const allowed: Record<Exclude<SessionMode, "absent">, boolean> = {
      none: cwd === "/",
      agent: cwd === system.agentWorkspace,
      ephemeral: inOwnLease,
      uncertain: cwd === "/" || inOwnLease || (run.key === "agent:main:main" && cwd === system.agentWorkspace),
    };
    const mode = run.workspace ? run.mode : "none";
    if (mode === "absent" || !allowed[mode]) {
      out.push(`run ${run.runId} (${run.behaviour}, ${run.key}, mode ${mode}${run.workspace ? "" : ", workspace:false"}) started in ${cwd}${row === undefined ? "" : ` (lease of ${row.sessionKey}, ${row.kind})`}`);
    }
  }
}

function live(system: ModelSystem): Set<string> {
  return new Set(system.incarnations.filter((incarnation) => incarnation.stopped === undefined).map((incarnation) => incarnation.instanceId));
}

function checkSnapshot(system: ModelSystem, snapshot: Snapshot, out: string[]): void {
  const running = live(system);
  for (const rows of [snapshot.before, snapshot.after]) {
    const holding = new Map<string, string[]>();
    for (const row of rows) if ((row.state === "acquiring" || row.state === "live") && row.instanceId !== null && running.has(row.instanceId)) push(holding, row.sessionKey, row.leaseId);
    for (const [key, ids] of holding) if (ids.length > 1) out.push(`session ${key} holds ${ids.length} leases at once: ${ids.join(", ")}`);
  }
  for (const name of snapshot.entries) {
    if (isMachinery(name)) continue;
    const dir = path.join(system.root, name);
    if (name.startsWith(".")) {
      out.push(`unexpected entry ${name} in the root`);
      continue;
    }
    const row = snapshot.after.find((candidate) => candidate.path === dir);
    if (row === undefined) out.push(`directory ${name} in the root has no ledger row`);
    else if (row.state === "released" && exists(dir)) out.push(`directory ${name} is still there, but its lease ${row.leaseId} is released (${row.releaseReason}, ${row.outcome})`);
  }
  for (const row of snapshot.before) {
    if (row.kind === "ephemeral" && row.state === "released" && row.path !== null && snapshot.entries.includes(path.basename(row.path))) {
      out.push(`lease ${row.leaseId} of ${row.sessionKey} is released (${row.releaseReason}, ${row.outcome}) but its directory ${path.basename(row.path)} is in the root`);
    }
  }
  for (const process of snapshot.processes) {
    const { pid, cwd } = process;
    const name = path.relative(system.root, cwd).split(path.sep)[0] ?? "";
    const who = `process ${pid}${process.runId === undefined ? "" : ` of run ${process.runId}`}`;
    // A workspace moved to trash around a process: name the lease it was started in.
    const dir = name.startsWith(".") && process.workspace !== undefined ? process.workspace : path.join(system.root, name);
    const row = snapshot.before.find((candidate) => candidate.path === dir) ?? snapshot.after.find((candidate) => candidate.path === dir);
    if (name === "" || (name.startsWith(".") && row === undefined)) out.push(`${who} has its cwd in ${cwd}, which no lease owns`);
    else if (row === undefined) out.push(`${who} has its cwd in ${cwd}, which has no ledger row`);
    else if (row.state === "released" || name.startsWith(".")) {
      const owner = system.incarnations.find((incarnation) => incarnation.instanceId === row.instanceId);
      out.push(
        `${who} is alive in ${cwd}, in workspace ${path.basename(dir)} of ${row.sessionKey}, whose lease ${row.leaseId} (gateway ${owner?.index ?? "?"}, ${owner?.stopped ?? "running"}) is ${row.state}${row.state === "released" ? ` (${row.releaseReason}, ${row.outcome})` : ""}`,
      );
    }
  }
  for (const incarnation of system.incarnations) {
    if (incarnation.stopped !== "graceful") continue;
    for (const row of snapshot.after) {
      if (row.instanceId === incarnation.instanceId && OPEN_STATES.has(row.state)) out.push(`gateway ${incarnation.index} stopped gracefully, but its lease ${row.leaseId} of ${row.sessionKey} is ${row.state}`);
    }
  }
}

/** Every invariant that holds at any point, even with runs in flight. */
export async function stepViolations(system: ModelSystem): Promise<string[]> {
  const out: string[] = [];
  const snapshot = await system.snapshot();
  for (const incarnation of system.incarnations) {
    const view = viewOf(system, incarnation.conn);
    checkResponses(system, view, out);
    checkEvents(view, out);
    checkCwds(system, view, snapshot.after, out);
  }
  checkSnapshot(system, snapshot, out);
  return out;
}

/** After a collection that ran to the end: nothing of a stopped gateway is left open or on disk. */
export function afterCollectionViolations(system: ModelSystem, out: string[] = []): string[] {
  const stopped = new Map(system.incarnations.filter((incarnation) => incarnation.stopped !== undefined).map((incarnation) => [incarnation.instanceId, incarnation]));
  const rows = system.ledger();
  for (const row of rows) {
    const owner = row.instanceId === null ? undefined : stopped.get(row.instanceId);
    if (owner !== undefined && row.state !== "released") out.push(`after a collection, lease ${row.leaseId} of ${row.sessionKey} from stopped gateway ${owner.index} (${owner.stopped}) is still ${row.state}`);
    if (owner !== undefined && row.kind === "ephemeral" && row.path !== null && exists(row.path)) out.push(`after a collection, the directory ${path.basename(row.path)} of stopped gateway ${owner.index} (${owner.stopped}) is still there (row ${row.state})`);
  }
  return out;
}

/** After a graceful stop: the stopped gateway released everything and left no process behind. */
export async function afterGracefulStopViolations(system: ModelSystem, runnerPids: readonly number[]): Promise<string[]> {
  const out: string[] = [];
  const incarnation = system.incarnations.filter((candidate) => candidate.stopped === "graceful").at(-1);
  const snapshot = await system.snapshot();
  for (const row of snapshot.after) {
    if (row.instanceId !== incarnation?.instanceId) continue;
    if (row.state !== "released") out.push(`gateway ${incarnation.index} stopped gracefully, but its lease ${row.leaseId} of ${row.sessionKey} is ${row.state}`);
    if (row.kind === "ephemeral" && row.path !== null && exists(row.path)) out.push(`gateway ${incarnation.index} stopped gracefully, but the directory ${path.basename(row.path)} of ${row.sessionKey} is still there`);
  }
  for (const { pid, cwd } of snapshot.processes) out.push(`process ${pid} still runs in ${cwd} after a graceful stop`);
  if (runnerPids.length > 0 && system.incarnations.every((candidate) => candidate.stopped !== "sigkill")) out.push(`runner process(es) ${runnerPids.join(", ")} outlived a graceful stop`);
  checkSnapshot(system, snapshot, out);
  return out;
}

/** The terminal kinds a run may end with: from its message, plus "aborted" when an operator's call could have reached it. */
export function allowedTerminals(system: ModelSystem, request: SentRequest): Set<string> {
  const run = request.run as RunInfo;
  const allowed = new Set<string>({ ok: ["final"], slow: ["final"], spawn: ["final"], fail: ["error:RUNNER_FAILED"], hang: ["timeout"] }[run.behaviour]);
  const view = viewOf(system, request.conn);
  const disrupted = view.requests.some((other) => {
    if (other.key !== run.key || !["chat.abort", "sessions.delete", "sessions.reset"].includes(other.method)) return false;
    if (other.method === "chat.abort" && other.params["runId"] !== undefined && other.params["runId"] !== run.runId) return false;
    const answered = view.responses.get(other.id)?.[0];
    // Answered before this run was even sent: it could not reach it.
    return !(answered !== undefined && answered < request.sentAt);
  });
  if (disrupted || request.conn.cutAt !== undefined) allowed.add("aborted");
  return allowed;
}

/** The strict checks on the recorded history once everything has ended. */
export function quiescentHistoryViolations(system: ModelSystem, out: string[] = []): string[] {
  for (const incarnation of system.incarnations) {
    const view = viewOf(system, incarnation.conn);
    const cut = incarnation.conn.cutAt !== undefined;
    for (const request of view.requests) {
      const answers = view.responses.get(request.id) ?? [];
      const expected = request.method === "agent" && view.frames[answers[0] ?? -1]?.ok === true ? 2 : 1;
      if (!cut && answers.length !== expected) out.push(`${request.method} ${request.id} (step ${request.step}) got ${answers.length} of ${expected} response(s)`);
      const run = request.run;
      if (run === undefined || !view.acks.has(run.runId)) continue;
      const terminals = view.terminals.get(run.runId) ?? [];
      if (!cut && terminals.length !== 1) out.push(`run ${run.runId} (${run.behaviour}, step ${request.step}) has ${terminals.length} terminal chat events`);
      const terminal = terminalPayload(view, run.runId);
      if (terminal === undefined) continue;
      const allowed = allowedTerminals(system, request);
      const kind = terminalKind(terminal.payload);
      if (!allowed.has(kind)) out.push(`run ${run.runId} (${run.kind} "${run.behaviour}" on ${run.key}, step ${request.step}) ended ${kind}; allowed: ${[...allowed].join(", ")} — ${JSON.stringify(terminal.payload)}`);
    }
  }
  return out;
}

export function throwIfAny(violations: readonly string[], system: ModelSystem, what: string): void {
  if (violations.length === 0) return;
  const trace = system.trace.slice(-120).join("\n");
  throw new InvariantViolation(`${violations.length} invariant(s) broken ${what}:\n  - ${violations.slice(0, 20).join("\n  - ")}\nsequence so far (${system.long ? "long form" : "short form"}, settings ${JSON.stringify(system.settings)}):\n${trace}`);
}
