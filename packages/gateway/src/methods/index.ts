import { randomUUID } from "node:crypto";
import { z } from "zod";
import { GatewayError } from "../errors.ts";
import { type MethodContext, type MethodTable, defineMethod, failureReply } from "../protocol/index.ts";
import type { RunRecord, RunStatus } from "../store/index.ts";
import type { RunResult } from "../runs/run-manager.ts";
import { type CanonicalKey, assertKnownAgent, canonicalizeKey, mainSessionKey } from "../sessions/keys.ts";
import type { GatewayContext } from "../context.ts";
import { toGcSummary } from "../collector.ts";
import { MAX_TIMER_MS } from "../config/index.ts";

const key = z.string().min(1).max(512);
const agentId = z.string().min(1).max(64);
const idempotencyKey = z.string().min(1).max(256);
const message = z.string().max(1_000_000);
const workspaceMode = z.enum(["ephemeral", "agent", "persistent", "none"]);

/** Event names this gateway emits (hello-ok features.events). */
export const GATEWAY_EVENTS = ["connect.challenge", "chat", "agent", "sessions.changed", "tick", "shutdown"];

/**
 * The RPC surface: one typed table of method → params schema, scope and handler. Params are
 * lenient about unknown fields (existing clients send more than we use) and strict about the
 * types and sizes of the ones we read.
 */
export function createMethods(ctx: GatewayContext): MethodTable {
  const { store, runs, config } = ctx;

  function canonical(raw: string, agent?: string): CanonicalKey {
    return canonicalizeKey(raw, ctx.keyContext, agent);
  }

  function chatAckFromRecord(record: RunRecord): unknown {
    return terminalAck(record.runId, record.status, record.errorMessage, record.endedAt);
  }

  function terminalAck(runId: string, status: RunStatus, errorMessage: string | null, endedAt: number | null): unknown {
    switch (status) {
      case "ok":
        return { runId, status: "ok" };
      case "aborted":
        return { runId, status: "timeout", summary: "aborted", stopReason: "rpc", endedAt };
      case "timeout":
        return failureReply({ runId, status: "timeout", summary: errorMessage ?? "timeout", endedAt }, new GatewayError("RUNNER_TIMEOUT", errorMessage ?? "run timed out", { fix: null }));
      case "error":
        return failureReply({ runId, status: "error", summary: errorMessage ?? "error" }, new GatewayError("RUNNER_FAILED", errorMessage ?? "run failed", { fix: null }));
      default:
        return { runId, status: "in_flight" };
    }
  }

  function agentFinal(result: RunResult): unknown {
    const base = { runId: result.runId, endedAt: result.endedAt };
    if (result.status === "ok") {
      return { ...base, status: "ok", summary: "completed", result: { payloads: [{ text: result.text, mediaUrl: null }], meta: { durationMs: result.endedAt - result.startedAt } } };
    }
    if (result.status === "aborted") return { ...base, status: "timeout", summary: "aborted", stopReason: "rpc" };
    const error = result.status === "timeout" ? new GatewayError("RUNNER_TIMEOUT", result.errorMessage ?? "run timed out", { fix: null }) : new GatewayError("RUNNER_FAILED", result.errorMessage ?? "run failed", { fix: null });
    return failureReply({ ...base, status: result.status, summary: result.errorMessage }, error);
  }

  function agentFinalFromRecord(record: RunRecord): unknown {
    return agentFinal({
      runId: record.runId,
      sessionKey: record.sessionKey,
      status: record.status === "running" ? "error" : record.status,
      text: record.replyText ?? "",
      errorMessage: record.errorMessage,
      startedAt: record.startedAt,
      endedAt: record.endedAt ?? record.startedAt,
      stopReason: record.status,
    });
  }

  /** Admits a turn on a key: canonical key, implicit session creation (no workspace yet), the run; it starts once `acked` settles. */
  function submitTurn(params: { sessionKey: string; agentId?: string | undefined; message: string; runId: string; kind: "chat" | "agent"; workspace?: boolean | undefined; timeoutMs?: number | undefined; acked: Promise<void> }) {
    const target = canonical(params.sessionKey, params.agentId);
    // In the admission group: the turns of one socket read share one commit, made after their
    // acks are written (sessions.changed and the run's start wait for it; store/transactions.ts).
    const outcome = store.group(() => {
      // A known runId is a replay (in_flight, cached or conflict): answered from the run alone, it creates no session.
      const replayed = runs.replay(params.runId, params.message);
      if (replayed !== undefined) return replayed;
      const admitted = ctx.admitSession(target, params.kind === "agent" ? "run" : "implicit", params.workspace === false ? "none" : undefined);
      return runs.admit({
        runId: params.runId,
        kind: params.kind,
        sessionKey: target.key,
        agentId: target.agentId,
        message: params.message,
        mode: admitted.session.workspaceMode,
        useWorkspace: params.workspace !== false,
        timeoutMs: params.timeoutMs,
        acked: params.acked,
        newSession: admitted.created,
      });
    });
    return { target, outcome };
  }

  function subscribed(conn: MethodContext["conn"]): void {
    conn.data.set("sessions.subscribed", true);
  }

  return {
    health: defineMethod({
      scope: "operator.read",
      params: z.looseObject({ probe: z.boolean().optional() }),
      handler: async () => ctx.health(),
    }),
    status: defineMethod({
      scope: "operator.read",
      params: z.looseObject({}),
      handler: async () => ctx.status(),
    }),
    "agents.list": defineMethod({
      scope: "operator.read",
      params: z.looseObject({}),
      handler: async () => ({
        defaultId: config.defaultAgentId,
        mainKey: config.session.mainKey,
        scope: "per-sender",
        ownership: config.agentIds.length === 1 ? "sole" : "shared",
        selectionRequired: false,
        agents: config.agentIds.map((id) => ({ id, name: config.agents.entries[id]?.name ?? id, workspace: ctx.agentWorkspace(id) })),
      }),
    }),
    "sessions.subscribe": defineMethod({
      scope: "operator.read",
      params: z.looseObject({}),
      handler: async (_params, call) => {
        subscribed(call.conn);
        return { subscribed: true };
      },
    }),
    "sessions.list": defineMethod({
      scope: "operator.read",
      params: z.looseObject({
        limit: z.int().min(1).max(1000).optional(),
        offset: z.int().min(0).optional(),
        agentId: agentId.optional(),
        search: z.string().max(512).optional(),
        label: z.string().max(512).optional(),
      }),
      handler: async (params) => {
        if (params.agentId !== undefined) assertKnownAgent(params.agentId, ctx.keyContext);
        const limit = params.limit ?? 100;
        const offset = params.offset ?? 0;
        const { rows, total } = store.listSessions({ limit, offset, agentId: params.agentId?.toLowerCase(), search: params.search ?? params.label });
        const nextOffset = offset + rows.length < total ? offset + rows.length : null;
        return {
          ts: Date.now(),
          path: store.path,
          count: rows.length,
          totalCount: total,
          limitApplied: limit,
          offset,
          nextOffset,
          hasMore: nextOffset !== null,
          owners: [],
          defaults: ctx.sessionDefaults(),
          sessions: rows.map((row) => ctx.sessionRow(row)),
        };
      },
    }),
    "sessions.create": defineMethod({
      // A kept per-session directory is never removed: only an admin may ask for one.
      scope: (params) => (params.workspace === "persistent" ? "operator.admin" : "operator.write"),
      params: z.looseObject({
        key: key.optional(),
        agentId: agentId.optional(),
        label: z.string().max(512).optional(),
        message: message.optional(),
        idempotencyKey: idempotencyKey.optional(),
        timeoutMs: z.int().min(0).max(MAX_TIMER_MS).optional(),
        workspace: z.union([z.literal(false), workspaceMode]).optional(),
      }),
      handler: async (params, call) => {
        const owner = params.agentId === undefined ? config.defaultAgentId : assertKnownAgent(params.agentId, ctx.keyContext);
        const target = canonical(params.key ?? `agent:${owner}:dashboard:${randomUUID()}`, params.agentId);
        const mode = params.workspace === false ? "none" : (params.workspace ?? "agent");
        const session = ctx.ensureSession(target, "operator", mode);
        if (params.label !== undefined && session.label !== params.label) store.patchSession(target.key, { label: params.label, updatedAt: Date.now() });
        let runId: string | undefined;
        if (params.message !== undefined && params.message !== "") {
          runId = params.idempotencyKey ?? randomUUID();
          runs.submit({ runId, kind: "chat", sessionKey: target.key, agentId: target.agentId, message: params.message, mode: session.workspaceMode, useWorkspace: true, timeoutMs: params.timeoutMs || undefined, acked: call.acked });
        }
        const entry = store.getSession(target.key);
        return { ok: true, key: target.key, sessionId: entry?.sessionId, entry: entry === undefined ? null : ctx.sessionRow(entry), runStarted: runId !== undefined, ...(runId === undefined ? {} : { runId }), resolved: ctx.resolvedModel() };
      },
    }),
    "sessions.patch": defineMethod({
      scope: "operator.write",
      params: z.looseObject({ key, agentId: agentId.optional(), label: z.string().max(512).nullable().optional() }),
      handler: async (params) => {
        const target = canonical(params.key, params.agentId);
        ctx.ensureSession(target, "operator");
        const patch: { updatedAt: number; label?: string | null } = { updatedAt: Date.now() };
        if (params.label !== undefined) patch.label = params.label;
        const entry = store.patchSession(target.key, patch);
        ctx.sessionsChanged({ sessionKey: target.key, agentId: target.agentId, reason: "patch", ...(entry === undefined ? {} : { sessionId: entry.sessionId, session: ctx.sessionRow(entry) }) });
        return { ok: true, path: store.path, key: target.key, entry: entry === undefined ? null : ctx.sessionRow(entry), resolved: ctx.resolvedModel() };
      },
    }),
    "sessions.reset": defineMethod({
      scope: "operator.admin",
      removesData: true,
      params: z.looseObject({ key, agentId: agentId.optional(), reason: z.enum(["new", "reset"]).optional() }),
      handler: async (params) => {
        const target = canonical(params.key, params.agentId);
        await ctx.endSession(target.key, "reset");
        ctx.ensureSession(target, "operator");
        store.clearMessages(target.key);
        const entry = store.patchSession(target.key, { updatedAt: Date.now() });
        ctx.sessionsChanged({ sessionKey: target.key, agentId: target.agentId, reason: params.reason ?? "reset", ...(entry === undefined ? {} : { sessionId: entry.sessionId }) });
        return { ok: true, key: target.key, entry: entry === undefined ? null : ctx.sessionRow(entry), resolved: ctx.resolvedModel() };
      },
    }),
    "sessions.delete": defineMethod({
      scope: (params: { archivedOnly?: boolean | undefined }) => (params.archivedOnly === true ? "operator.write" : "operator.admin"),
      removesData: true,
      params: z.looseObject({ key, agentId: agentId.optional(), deleteTranscript: z.boolean().optional(), archivedOnly: z.boolean().optional() }),
      handler: async (params) => {
        const target = canonical(params.key, params.agentId);
        // archivedOnly (write scope) may delete only archived sessions; this core archives none.
        if (params.archivedOnly === true) return { ok: true, key: target.key, deleted: false, archived: [] };
        const existing = store.getSession(target.key);
        await ctx.endSession(target.key, "delete");
        const deleted = existing !== undefined && store.deleteSession(target.key);
        if (deleted) {
          ctx.sessionsChanged({ sessionKey: target.key, sessionId: existing.sessionId, agentId: target.agentId, reason: "delete" });
          ctx.sessionsChanged({ reason: "delete" });
        }
        return { ok: true, key: target.key, deleted, archived: [] };
      },
    }),
    "chat.send": defineMethod({
      scope: "operator.write",
      params: z.looseObject({
        sessionKey: key,
        message,
        idempotencyKey,
        agentId: agentId.optional(),
        timeoutMs: z.int().min(0).max(MAX_TIMER_MS).optional(),
        workspace: z.boolean().optional(),
      }),
      // Synchronous, so the ack goes out before the next frame of the same read is handled.
      handler: (params, call) => {
        const { outcome } = submitTurn({ ...params, runId: params.idempotencyKey, kind: "chat", timeoutMs: params.timeoutMs || undefined, acked: call.acked });
        if (outcome.state === "started") return { runId: outcome.run.runId, status: "started" };
        if (outcome.state === "in_flight") return { runId: outcome.run.runId, status: "in_flight" };
        return chatAckFromRecord(outcome.record);
      },
    }),
    "chat.history": defineMethod({
      scope: "operator.read",
      params: z.looseObject({ sessionKey: key, agentId: agentId.optional(), limit: z.int().min(1).max(1000).optional(), offset: z.int().min(0).optional() }),
      handler: async (params) => {
        const target = canonical(params.sessionKey, params.agentId);
        const session = store.getSession(target.key);
        const { messages, total } = session === undefined ? { messages: [], total: 0 } : store.listMessages(target.key, { limit: params.limit ?? 200, offset: params.offset });
        return {
          sessionKey: params.sessionKey,
          sessionId: session?.sessionId ?? null,
          messages: messages.map((m) => ({ ...(m.content as Record<string, unknown>), __openclaw: { id: m.id, seq: m.seq, ...(m.runId === null ? {} : { runId: m.runId }) } })),
          totalMessages: total,
          pendingInputs: { items: [], total: 0 },
          defaults: ctx.sessionDefaults(),
          sessionInfo: session === undefined ? null : ctx.sessionRow(session),
        };
      },
    }),
    "chat.abort": defineMethod({
      scope: "operator.write",
      params: z.looseObject({ sessionKey: key, agentId: agentId.optional(), runId: z.string().min(1).max(256).optional() }),
      handler: async (params) => {
        const target = canonical(params.sessionKey, params.agentId);
        const runIds = runs.abort(target.key, params.runId);
        return { ok: true, aborted: runIds.length > 0, runIds };
      },
    }),
    agent: defineMethod({
      scope: "operator.write",
      params: z.looseObject({
        message: message.min(1),
        idempotencyKey,
        agentId: agentId.optional(),
        sessionKey: key.optional(),
        timeout: z.int().min(0).max(Math.floor(MAX_TIMER_MS / 1000)).optional(),
        workspace: z.boolean().optional(),
      }),
      handler: async (params, call) => {
        const owner = params.agentId === undefined ? config.defaultAgentId : assertKnownAgent(params.agentId, ctx.keyContext);
        const { target, outcome } = submitTurn({
          sessionKey: params.sessionKey ?? mainSessionKey(owner, config.session.mainKey),
          agentId: params.agentId,
          message: params.message,
          runId: params.idempotencyKey,
          kind: "agent",
          workspace: params.workspace,
          timeoutMs: params.timeout ? params.timeout * 1000 : undefined,
          acked: call.acked,
        });
        if (outcome.state === "cached") return agentFinalFromRecord(outcome.record);
        call.interim({ runId: outcome.run.runId, sessionKey: target.key, agentId: target.agentId, status: "accepted", acceptedAt: outcome.run.acceptedAt });
        return agentFinal(await outcome.run.done);
      },
    }),
    "agent.wait": defineMethod({
      scope: "operator.write",
      params: z.looseObject({ runId: z.string().min(1).max(256), timeoutMs: z.int().min(0).max(MAX_TIMER_MS).optional() }),
      handler: async (params) => {
        const result = await runs.wait(params.runId, params.timeoutMs ?? 30_000);
        if (result === undefined) throw new GatewayError("RUN_NOT_FOUND", `No run ${params.runId}`);
        if (result === "pending") return { runId: params.runId, status: "timeout" };
        const status = result.status === "running" ? "timeout" : result.status === "aborted" ? "timeout" : result.status;
        return { runId: params.runId, status, endedAt: result.endedAt, ...(result.status === "aborted" ? { stopReason: "rpc" } : {}) };
      },
    }),
    "workspaces.list": defineMethod({
      scope: "operator.read",
      params: z.looseObject({
        states: z.array(z.enum(["acquiring", "live", "releasing", "released", "failed"])).max(5).optional(),
        sessionKey: key.optional(),
        limit: z.int().min(1).max(10_000).optional(),
      }),
      handler: async (params) => {
        const sessionKey = params.sessionKey === undefined ? undefined : canonical(params.sessionKey).key;
        const leases = store.listLeases({ states: params.states, sessionKey, limit: params.limit ?? 1000 });
        return { root: ctx.ephemeralRoot, instanceId: ctx.instanceId, implicit: config.workspace.implicit, counts: store.countLeases(), leases };
      },
    }),
    "workspaces.gc": defineMethod({
      scope: "operator.admin",
      removesData: true,
      params: z.looseObject({ dryRun: z.boolean().optional() }),
      handler: async (params) => toGcSummary(await ctx.collect(params.dryRun ?? false)),
    }),
  };
}
