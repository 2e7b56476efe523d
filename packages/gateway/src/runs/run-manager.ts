import { createHash, randomUUID } from "node:crypto";
import { GatewayError } from "../errors.ts";
import type { AgentRunner, HistoryTurn } from "../runners/index.ts";
import type { WorkspaceLifecycle } from "../sessions/workspaces.ts";
import type { MessageRecord, RunKind, RunRecord, Store, WorkspaceMode } from "../store/index.ts";
import { RUN_OWNER } from "../runners/orphans.ts";
import { createDeltaCoalescer } from "./delta-coalescer.ts";

export type RunEndStatus = "ok" | "error" | "aborted" | "timeout";

export interface RunResult {
  readonly runId: string;
  readonly sessionKey: string;
  readonly status: RunEndStatus;
  readonly text: string;
  readonly errorMessage: string | null;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly stopReason: string;
}

export interface SubmitInput {
  runId: string;
  kind: RunKind;
  sessionKey: string;
  agentId: string;
  message: string;
  /** The session's workspace mode; `useWorkspace: false` runs this turn with none. */
  mode: WorkspaceMode;
  useWorkspace: boolean;
  /** Run budget; default the configured runner timeout. */
  timeoutMs?: number | undefined;
  /**
   * Settles once the reply that acknowledges the run (chat.send's `started`, agent's `accepted`:
   * MethodContext.acked) has been written. The run starts only then, so none of its events can
   * precede that reply, whatever the handler does after submitting.
   */
  acked: Promise<void>;
  /** The session is new with this turn, its row written with this turn's times: no update of them. */
  newSession?: boolean | undefined;
}

export type SubmitOutcome =
  | { state: "started"; run: RunHandle }
  | { state: "in_flight"; run: RunHandle }
  | { state: "cached"; record: RunRecord };

export interface RunHandle {
  readonly runId: string;
  readonly sessionKey: string;
  readonly agentId: string;
  readonly acceptedAt: number;
  readonly done: Promise<RunResult>;
}

export interface RunEvents {
  chat(payload: Record<string, unknown>): void;
  agent(payload: Record<string, unknown>): void;
}

export interface RunManagerOptions {
  store: Store;
  lifecycle: WorkspaceLifecycle;
  runner: AgentRunner;
  events: RunEvents;
  /** `runner.timeoutMs`: a run's budget when the call names none. */
  defaultTimeoutMs: number;
  /** Earlier turns handed to the runner, at most. Default 50. */
  historyTurns?: number | undefined;
  /** `session.maxQueuedRuns`: runs waiting behind a session's running one, at most. Default 100. */
  maxQueuedRuns?: number | undefined;
  /** How reply chunks become delta events: `gateway.deltaWindowMs` and `gateway.deltaMaxBytes` (see createDeltaCoalescer). */
  deltas: { windowMs: number; maxBytes: number };
  log?(line: string): void;
}

export interface RunManager {
  /** Admits a run, or answers a replay of its idempotencyKey: {@link replay}, else {@link admit}. */
  submit(input: SubmitInput): SubmitOutcome;
  /**
   * The answer to a replay of `runId` (in flight, or on record), or undefined when no run has it.
   * Throws IDEMPOTENCY_CONFLICT when it was used with another message.
   */
  replay(runId: string, message: string): SubmitOutcome | undefined;
  /** Admits a new run; for a runId {@link replay} found nothing. Throws RUN_QUEUE_FULL when the session's queue is full. */
  admit(input: SubmitInput): SubmitOutcome;
  /** Aborts the session's active and queued runs (only `runId` when given); returns the run ids aborted. */
  abort(sessionKey: string, runId?: string, reason?: Error): string[];
  /** Aborts every run of a session and resolves once they have all ended. */
  abortSession(sessionKey: string, reason: Error): Promise<void>;
  /** The result of a run once it ends; the stored record if it already has; undefined if unknown. `"pending"` when timeoutMs passes first. */
  wait(runId: string, timeoutMs: number): Promise<RunResult | RunRecord | "pending" | undefined>;
  /** Run ids active or queued for a session. */
  activeRunIds(sessionKey: string): string[];
  /** Aborts everything and waits (bounded) for runs to end. */
  shutdown(reason: Error, timeoutMs: number): Promise<void>;
}

interface Run extends RunHandle {
  readonly kind: RunKind;
  readonly message: string;
  readonly inputHash: string;
  readonly mode: WorkspaceMode;
  readonly useWorkspace: boolean;
  readonly timeoutMs: number;
  /** What the run's processes carry (OCGW_RUN_TOKEN), recorded so that the next start can stop them after a crash. */
  readonly processToken: string;
  readonly controller: AbortController;
  readonly acked: Promise<void>;
  readonly newSession: boolean;
  /** Settles once the run's record is committed (rejects when it could not be). */
  readonly recorded: Promise<undefined>;
  resolve(result: RunResult): void;
  seq: number;
}

interface Lane {
  running: Run | undefined;
  waiting: Run[];
}

export function hashInput(message: string): string {
  return createHash("sha256").update(message, "utf8").digest("hex");
}

function assistantMessage(text: string, timestamp: number): Record<string, unknown> {
  return { role: "assistant", content: [{ type: "text", text }], timestamp };
}

/** Turns stored messages into the runner's history (text only, oldest first). */
export function toHistory(messages: readonly MessageRecord[]): HistoryTurn[] {
  const turns: HistoryTurn[] = [];
  for (const message of messages) {
    if (message.role !== "user" && message.role !== "assistant") continue;
    const content = (message.content as { content?: unknown } | null)?.content;
    const text = typeof content === "string" ? content : Array.isArray(content) ? content.map((block: { text?: unknown }) => (typeof block.text === "string" ? block.text : "")).join("") : "";
    turns.push({ role: message.role, text });
  }
  return turns;
}

/**
 * Runs agent turns: one lane per session (turns of a session run one after another, as upstream
 * queues follow-ups), idempotency by runId, chat + agent events, and the hand-off to the
 * workspace lifecycle when a session's lane goes idle.
 */
export function createRunManager(options: RunManagerOptions): RunManager {
  const { store, lifecycle, runner, events } = options;
  const historyTurns = options.historyTurns ?? 50;
  const maxQueuedRuns = options.maxQueuedRuns ?? 100;
  const runs = new Map<string, Run>();
  const lanes = new Map<string, Lane>();

  function conflict(runId: string): GatewayError {
    return new GatewayError("IDEMPOTENCY_CONFLICT", "This message ID was already used for different input. Send the new message with a new idempotencyKey", {
      fix: null,
      details: { reason: "chat-request-conflict", runId },
    });
  }

  function emitAgent(run: Run, stream: string, data: Record<string, unknown>): void {
    run.seq += 1;
    events.agent({ runId: run.runId, seq: run.seq, stream, ts: Date.now(), data, sessionKey: run.sessionKey, agentId: run.agentId });
  }

  function emitChat(run: Run, state: string, extra: Record<string, unknown>): void {
    events.chat({ runId: run.runId, sessionKey: run.sessionKey, agentId: run.agentId, seq: run.seq, state, ...extra });
  }

  function classify(run: Run, error: unknown): { status: RunEndStatus; message: string; code?: string } {
    const message = error instanceof GatewayError ? error.detail : error instanceof Error ? error.message : String(error);
    if (error instanceof GatewayError && error.code === "RUNNER_TIMEOUT") return { status: "timeout", message };
    if (error instanceof GatewayError && !run.controller.signal.aborted) return { status: "error", message, code: error.code };
    if (run.controller.signal.aborted) {
      const reason = run.controller.signal.reason as unknown;
      if (reason instanceof DOMException && reason.name === "TimeoutError") return { status: "timeout", message: `run timed out after ${run.timeoutMs} ms` };
      return { status: "aborted", message };
    }
    return { status: "error", message };
  }

  async function execute(run: Run): Promise<void> {
    // No event of a run before the reply that acknowledged it (a queued run's has long been written).
    await run.acked;
    // Nor before its record is committed: a run whose record rolled back never runs.
    const unrecorded = await run.recorded.then(
      () => undefined,
      (error: unknown) => error,
    );
    if (unrecorded !== undefined) {
      abandon(run, unrecorded);
      return;
    }
    const startedAt = Date.now();
    lifecycle.busy(run.sessionKey);
    emitAgent(run, "lifecycle", { phase: "start", startedAt });
    let text = "";
    const deltas = createDeltaCoalescer({
      ...options.deltas,
      emit: ({ delta, snapshot }) => {
        emitAgent(run, "assistant", snapshot === undefined ? { delta } : { text: snapshot, delta });
        emitChat(run, "delta", { deltaText: delta, ...(snapshot === undefined ? {} : { message: assistantMessage(snapshot, Date.now()) }) });
      },
    });
    let outcome: { status: RunEndStatus; message: string | null; stopReason: string; code?: string | undefined };
    const timer = setTimeout(() => run.controller.abort(new DOMException(`run timed out after ${run.timeoutMs} ms`, "TimeoutError")), run.timeoutMs);
    try {
      if (run.controller.signal.aborted) throw run.controller.signal.reason;
      const lease = run.useWorkspace ? await lifecycle.acquire(run.sessionKey, run.agentId, run.mode, run.controller.signal) : undefined;
      if (run.controller.signal.aborted) throw run.controller.signal.reason;
      const earlier = store.listMessages(run.sessionKey, { limit: historyTurns + 1 }).messages.filter((m) => m.runId !== run.runId);
      const output = await runner.run({
        runId: run.runId,
        sessionKey: run.sessionKey,
        message: run.message,
        history: toHistory(earlier),
        cwd: lease?.path ?? null,
        signal: run.controller.signal,
        processToken: run.processToken,
        onDelta: (delta) => {
          text += delta;
          deltas.push(delta);
        },
      });
      text = output.text;
      outcome = { status: "ok", message: null, stopReason: output.stopReason };
    } catch (error) {
      const { status, message, code } = classify(run, error);
      outcome = { status, message, stopReason: status === "aborted" ? "rpc" : status, code };
    } finally {
      clearTimeout(timer);
      deltas.flush();
    }
    const endedAt = Date.now();
    try {
      // One commit for the run's end: its status, the reply in the transcript, the session's times.
      store.transaction(() => {
        store.finishRun(run.runId, {
          status: outcome.status,
          summary: outcome.status === "ok" ? "completed" : outcome.status,
          replyText: text,
          errorMessage: outcome.message,
          endedAt,
        });
        if (text !== "" && store.getSession(run.sessionKey) !== undefined) {
          store.appendMessage({ sessionKey: run.sessionKey, role: "assistant", content: { ...assistantMessage(text, endedAt), stopReason: outcome.stopReason }, runId: run.runId, idempotencyKey: null, createdAt: endedAt });
        }
        store.patchSession(run.sessionKey, { updatedAt: endedAt, lastInteractionAt: endedAt });
      });
    } catch (error) {
      options.log?.(`recording the end of run ${run.runId} failed: ${String(error)}`);
    }
    const next = nextInLane(run);
    // A one-shot caller (idleTtlMs 0) sees its final event only once the workspace is gone.
    if (next === undefined) {
      await lifecycle.idle(run.sessionKey).catch((error: unknown) => options.log?.(`idle release of ${run.sessionKey} failed: ${String(error)}`));
    }
    if (outcome.status === "ok") {
      emitAgent(run, "lifecycle", { phase: "end", startedAt, endedAt, stopReason: outcome.stopReason, aborted: false });
      emitChat(run, "final", { stopReason: outcome.stopReason, ...(text === "" ? {} : { message: assistantMessage(text, endedAt) }) });
    } else if (outcome.status === "aborted") {
      emitAgent(run, "lifecycle", { phase: "end", startedAt, endedAt, stopReason: "rpc", aborted: true });
      emitChat(run, "aborted", { stopReason: "rpc", ...(text === "" ? {} : { message: assistantMessage(text, endedAt) }) });
    } else {
      emitAgent(run, "lifecycle", { phase: "error", error: outcome.message, startedAt, endedAt, aborted: false });
      // errorCode (ours, from docs/errors.md) lets a client tell e.g. a retryable WORKSPACE_UNAVAILABLE from a runner failure.
      emitChat(run, "error", { errorMessage: outcome.message, errorKind: outcome.status === "timeout" ? "timeout" : "unknown", ...(outcome.code === undefined ? {} : { errorCode: outcome.code }) });
    }
    runs.delete(run.runId);
    run.resolve({ runId: run.runId, sessionKey: run.sessionKey, status: outcome.status, text, errorMessage: outcome.message, startedAt, endedAt, stopReason: outcome.stopReason });
    if (next !== undefined) void execute(next);
  }

  /** Hands the session's lane to its next run (returned, not started), or removes it. */
  function nextInLane(run: Run): Run | undefined {
    const lane = lanes.get(run.sessionKey);
    const next = lane?.waiting.shift();
    if (lane !== undefined) lane.running = next;
    if (next === undefined) lanes.delete(run.sessionKey);
    return next;
  }

  /** A run acknowledged as started whose record could not be committed: it ends in error, unrun, and its lane goes on. */
  function abandon(run: Run, error: unknown): void {
    const at = Date.now();
    const message = `the run could not be recorded: ${error instanceof Error ? error.message : String(error)}`;
    emitAgent(run, "lifecycle", { phase: "error", error: message, startedAt: at, endedAt: at, aborted: false });
    emitChat(run, "error", { errorMessage: message, errorKind: "unknown", errorCode: "STORE_UNAVAILABLE" });
    const next = nextInLane(run);
    runs.delete(run.runId);
    run.resolve({ runId: run.runId, sessionKey: run.sessionKey, status: "error", text: "", errorMessage: message, startedAt: at, endedAt: at, stopReason: "error" });
    if (next !== undefined) void execute(next);
  }

  /** The run's record, its user message, its session's times: written in the admission group. */
  function recordRun(run: Run): void {
    const at = run.acceptedAt;
    store.insertRun({ runId: run.runId, sessionKey: run.sessionKey, kind: run.kind, inputHash: run.inputHash, startedAt: at, processToken: run.processToken, owner: RUN_OWNER });
    store.appendMessage({
      sessionKey: run.sessionKey,
      role: "user",
      content: { role: "user", content: run.message, timestamp: at, idempotencyKey: `${run.runId}:user` },
      runId: run.runId,
      idempotencyKey: `${run.runId}:user`,
      createdAt: at,
    });
    if (!run.newSession) store.patchSession(run.sessionKey, { updatedAt: at, lastInteractionAt: at });
  }

  /** Starts an admitted run (it waits for its ack and its record), or queues it behind its session's running one. */
  function enqueue(run: Run): void {
    const lane = lanes.get(run.sessionKey);
    if (lane === undefined) {
      lanes.set(run.sessionKey, { running: run, waiting: [] });
      void execute(run);
    } else {
      lane.waiting.push(run);
    }
  }

  function abortRun(run: Run, reason: Error): void {
    if (!run.controller.signal.aborted) run.controller.abort(reason);
  }

  function replay(runId: string, message: string): SubmitOutcome | undefined {
    const active = runs.get(runId);
    if (active !== undefined) {
      if (active.inputHash !== hashInput(message)) throw conflict(runId);
      return { state: "in_flight", run: active };
    }
    const record = store.getRun(runId);
    if (record !== undefined) {
      if (record.inputHash !== hashInput(message)) throw conflict(runId);
      return { state: "cached", record };
    }
    return undefined;
  }

  function admit(input: SubmitInput): SubmitOutcome {
    const inputHash = hashInput(input.message);
    const waiting = lanes.get(input.sessionKey)?.waiting.length ?? 0;
    if (waiting >= maxQueuedRuns) {
      throw new GatewayError("RUN_QUEUE_FULL", `Session "${input.sessionKey}" already has ${waiting} runs waiting (session.maxQueuedRuns)`, { retryable: true, details: { waiting } });
    }
    const acceptedAt = Date.now();
    let resolve!: (result: RunResult) => void;
    const done = new Promise<RunResult>((r) => (resolve = r));
    const recorded = Promise.withResolvers<undefined>();
    // Handled: a queued run looks at it only when its turn comes, maybe long after it settled.
    recorded.promise.catch(() => undefined);
    const run: Run = {
      runId: input.runId,
      kind: input.kind,
      sessionKey: input.sessionKey,
      agentId: input.agentId,
      message: input.message,
      inputHash,
      mode: input.mode,
      // A "none" session still takes a (directory-less) lease from the none provider, so the
      // ledger records it like every other workspace.
      useWorkspace: input.useWorkspace,
      timeoutMs: input.timeoutMs ?? options.defaultTimeoutMs,
      processToken: randomUUID(),
      controller: new AbortController(),
      // Never rejects: a run whose ack could not be written still runs (it is admitted and recorded).
      acked: input.acked.catch(() => undefined),
      newSession: input.newSession === true,
      recorded: recorded.promise,
      acceptedAt,
      done,
      resolve,
      seq: 0,
    };
    // In its lane from here on (a replay of its runId is in_flight, chat.abort reaches it); its
    // record is written right before the admission group commits, after the acks of the whole
    // read (store.later), and it runs once that commit is made.
    runs.set(run.runId, run);
    enqueue(run);
    store.later(
      () => {
        recordRun(run);
        store.onCommit(() => recorded.resolve(undefined), recorded.reject);
      },
      recorded.reject,
    );
    return { state: "started", run };
  }

  return {
    submit: (input) => replay(input.runId, input.message) ?? admit(input),
    replay,
    admit,
    abort(sessionKey, runId, reason) {
      const lane = lanes.get(sessionKey);
      if (lane === undefined) return [];
      const targets = [...(lane.running === undefined ? [] : [lane.running]), ...lane.waiting].filter((run) => runId === undefined || run.runId === runId);
      const why = reason ?? new GatewayError("RUNNER_ABORTED", "aborted by chat.abort", { fix: null });
      for (const run of targets) abortRun(run, why);
      return targets.map((run) => run.runId);
    },
    async abortSession(sessionKey, reason) {
      const lane = lanes.get(sessionKey);
      if (lane === undefined) return;
      const all = [...(lane.running === undefined ? [] : [lane.running]), ...lane.waiting];
      for (const run of all) abortRun(run, reason);
      await Promise.all(all.map((run) => run.done));
    },
    async wait(runId, timeoutMs) {
      const run = runs.get(runId);
      if (run === undefined) return store.getRun(runId);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"pending">((resolve) => (timer = setTimeout(() => resolve("pending"), timeoutMs)));
      const result = await Promise.race([run.done, timeout]);
      clearTimeout(timer);
      return result;
    },
    activeRunIds(sessionKey) {
      const lane = lanes.get(sessionKey);
      if (lane === undefined) return [];
      return [...(lane.running === undefined ? [] : [lane.running.runId]), ...lane.waiting.map((run) => run.runId)];
    },
    async shutdown(reason, timeoutMs) {
      const all = [...runs.values()];
      for (const run of all) abortRun(run, reason);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([Promise.all(all.map((run) => run.done)), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      clearTimeout(timer);
    },
  };
}
