/**
 * Every RPC method of a real gateway (real sockets, SQLite and directories): happy paths,
 * invalid params, event order, idempotency, scopes, unknown agents and session keys.
 */
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { GATEWAY_VERSION } from "../../src/gateway.ts";
import { connectClient, connectParams, failedConnect } from "../protocol/helpers.ts";
import type { Frame, ResFrame, TestClient } from "../protocol/helpers.ts";
import { connect, leaseDirs, startTestGateway, walk } from "./harness.ts";

// ----- payload shapes the tests read --------------------------------------------------------

interface TextBlock {
  type: string;
  text: string;
}

interface ChatPayload {
  runId: string;
  sessionKey: string;
  seq: number;
  state: string;
  deltaText?: string;
  message?: { role: string; content: TextBlock[] };
  errorMessage?: string;
  errorKind?: string;
  stopReason?: string;
}

interface AgentPayload {
  runId: string;
  seq: number;
  stream: string;
  sessionKey?: string;
  data: { phase?: string; text?: string; delta?: string; error?: string };
}

interface SessionRow {
  key: string;
  sessionId: string;
  agentId: string;
  label: string | null;
  workspaceMode: string;
  workspaceDir: string | null;
}

interface SessionsList {
  count: number;
  totalCount: number;
  sessions: SessionRow[];
}

interface HistoryMessage {
  role: string;
  content: unknown;
  __openclaw: { id: string; seq: number };
}

interface History {
  sessionKey: string;
  sessionId: string | null;
  messages: HistoryMessage[];
}

interface LeaseRow {
  leaseId: string;
  sessionKey: string;
  kind: string;
  mode: string;
  path: string | null;
  state: string;
}

interface WorkspacesList {
  root: string;
  leases: LeaseRow[];
}

// ----- helpers ------------------------------------------------------------------------------

const TERMINAL = new Set(["final", "aborted", "error"]);
const ADMIN = ["operator.admin"];

function payload<T>(frame: Frame): T {
  return frame.payload as T;
}

function isRunEvent(frame: Frame, event: "chat" | "agent", runId: string): boolean {
  return frame.type === "event" && frame.event === event && (frame.payload as { runId?: unknown } | undefined)?.runId === runId;
}

/** Sends chat.send with a fresh idempotencyKey (unless given); returns the ack and the runId. */
async function chatSend(client: TestClient, sessionKey: string, message: string, extra: Record<string, unknown> = {}): Promise<{ res: ResFrame; runId: string }> {
  const runId = typeof extra.idempotencyKey === "string" ? extra.idempotencyKey : randomUUID();
  const res = await client.request("chat.send", { sessionKey, message, idempotencyKey: runId, ...extra });
  return { res, runId };
}

/** The run's terminal chat event (final, aborted or error). */
async function chatEnd(client: TestClient, runId: string): Promise<ChatPayload> {
  const frame = await client.next((f) => isRunEvent(f, "chat", runId) && TERMINAL.has((f.payload as ChatPayload).state));
  return payload<ChatPayload>(frame);
}

/** chat.send, expects it started, waits for its terminal chat event. */
async function chat(client: TestClient, sessionKey: string, message: string, extra: Record<string, unknown> = {}): Promise<{ runId: string; end: ChatPayload }> {
  const { res, runId } = await chatSend(client, sessionKey, message, extra);
  expect(res.ok, JSON.stringify(res.error)).toBe(true);
  expect(res.payload).toEqual({ runId, status: "started" });
  return { runId, end: await chatEnd(client, runId) };
}

async function ok<T>(client: TestClient, method: string, params?: unknown): Promise<T> {
  const res = await client.request(method, params);
  expect(res.ok, `${method}: ${JSON.stringify(res.error)}`).toBe(true);
  return res.payload as T;
}

function listSessions(client: TestClient): Promise<SessionsList> {
  return ok<SessionsList>(client, "sessions.list", {});
}

function history(client: TestClient, sessionKey: string): Promise<History> {
  return ok<History>(client, "chat.history", { sessionKey });
}

function workspaces(client: TestClient, params: Record<string, unknown> = {}): Promise<WorkspacesList> {
  return ok<WorkspacesList>(client, "workspaces.list", params);
}

function textOf(message: ChatPayload["message"]): string | undefined {
  return message?.content[0]?.text;
}

// ----- hello-ok -----------------------------------------------------------------------------

describe("hello-ok", () => {
  it("advertises protocol 4, every method and event of the core, and the main session key", async () => {
    const t = await startTestGateway();
    const { hello: raw } = await connectClient(t.url);
    const hello = raw as {
      type: string;
      protocol: number;
      features: { methods: string[]; events: string[] };
      snapshot: { sessionDefaults: { mainSessionKey: string; defaultAgentId: string } };
      auth: { scopes: string[] };
    };
    expect(hello.type).toBe("hello-ok");
    expect(hello.protocol).toBe(4);
    for (const method of [
      "health",
      "status",
      "agents.list",
      "sessions.list",
      "sessions.create",
      "sessions.delete",
      "sessions.reset",
      "sessions.patch",
      "chat.send",
      "chat.history",
      "chat.abort",
      "agent",
      "agent.wait",
      "workspaces.list",
      "workspaces.gc",
    ]) {
      expect(hello.features.methods, method).toContain(method);
    }
    for (const event of ["chat", "agent", "sessions.changed", "tick", "shutdown"]) expect(hello.features.events, event).toContain(event);
    expect(hello.snapshot.sessionDefaults.mainSessionKey).toBe("agent:main:main");
    expect(hello.snapshot.sessionDefaults.defaultAgentId).toBe("main");
    expect(hello.auth.scopes).toEqual(["operator.read", "operator.write"]);
  });
});

// ----- invalid params -----------------------------------------------------------------------

const LONG_KEY = "k".repeat(513);

const invalidCases: { method: string; params: unknown; contains: string; admin?: boolean }[] = [
  { method: "chat.send", params: { sessionKey: "a", message: "hi" }, contains: "must have required property 'idempotencyKey'" },
  { method: "chat.send", params: { message: "hi", idempotencyKey: "i" }, contains: "must have required property 'sessionKey'" },
  { method: "chat.send", params: { sessionKey: LONG_KEY, message: "hi", idempotencyKey: "i" }, contains: "/sessionKey" },
  { method: "chat.send", params: { sessionKey: "a", message: 42, idempotencyKey: "i" }, contains: "/message" },
  { method: "chat.send", params: { sessionKey: "a", message: "hi", idempotencyKey: "" }, contains: "/idempotencyKey" },
  { method: "chat.send", params: { sessionKey: "a", message: "hi", idempotencyKey: "i", timeoutMs: -1 }, contains: "/timeoutMs" },
  { method: "chat.send", params: { sessionKey: "a", message: "hi", idempotencyKey: "i", workspace: "no" }, contains: "/workspace" },
  { method: "chat.history", params: {}, contains: "must have required property 'sessionKey'" },
  { method: "chat.history", params: { sessionKey: "a", limit: 0 }, contains: "/limit" },
  { method: "chat.history", params: { sessionKey: LONG_KEY }, contains: "/sessionKey" },
  { method: "chat.abort", params: { sessionKey: 7 }, contains: "/sessionKey" },
  { method: "sessions.list", params: { limit: 0 }, contains: "/limit" },
  { method: "sessions.list", params: { limit: "5" }, contains: "/limit" },
  { method: "sessions.list", params: { offset: -1 }, contains: "/offset" },
  { method: "sessions.create", params: { label: 5 }, contains: "/label" },
  { method: "sessions.create", params: { key: LONG_KEY }, contains: "/key" },
  { method: "sessions.patch", params: { label: "x" }, contains: "must have required property 'key'" },
  { method: "sessions.patch", params: { key: "a", label: 5 }, contains: "/label" },
  { method: "sessions.reset", params: {}, contains: "must have required property 'key'", admin: true },
  { method: "sessions.reset", params: { key: "a", reason: "because" }, contains: "/reason", admin: true },
  { method: "sessions.delete", params: { key: "" }, contains: "/key", admin: true },
  { method: "agent", params: { idempotencyKey: "i" }, contains: "must have required property 'message'" },
  { method: "agent", params: { message: "hi" }, contains: "must have required property 'idempotencyKey'" },
  { method: "agent", params: { message: "", idempotencyKey: "i" }, contains: "/message" },
  { method: "agent", params: { message: "hi", idempotencyKey: "i", timeout: 1.5 }, contains: "/timeout" },
  { method: "agent.wait", params: {}, contains: "must have required property 'runId'" },
  { method: "agent.wait", params: { runId: "r", timeoutMs: "soon" }, contains: "/timeoutMs" },
  { method: "health", params: { probe: "yes" }, contains: "/probe" },
  { method: "status", params: 5, contains: "" },
  { method: "agents.list", params: "all", contains: "" },
  { method: "workspaces.list", params: { states: ["bogus"] }, contains: "/states/0" },
  { method: "workspaces.list", params: { limit: 0 }, contains: "/limit" },
  { method: "workspaces.gc", params: { dryRun: "yes" }, contains: "/dryRun", admin: true },
];

describe("invalid params", () => {
  it.each(invalidCases)("$method $params → INVALID_REQUEST", async ({ method, params, contains, admin }) => {
    const t = await startTestGateway();
    const client = await connect(t.url, admin === true ? ADMIN : undefined);
    const res = await client.request(method, params);
    expect(res.ok).toBe(false);
    expect(res.error?.code).toBe("INVALID_REQUEST");
    expect(res.error?.message.startsWith(`invalid ${method} params:`), res.error?.message).toBe(true);
    expect(res.error?.message).toContain(contains);
    // Nothing was created by a rejected request.
    expect((await listSessions(client)).totalCount).toBe(0);
    expect(await leaseDirs(t.root)).toEqual([]);
  });
});

// ----- chat.send ----------------------------------------------------------------------------

describe("chat.send", () => {
  it("acks before the run's events; chat deltas then one final; agent seq contiguous; frame seq increasing", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const runId = `idem-${randomUUID()}`;
    const res = await client.request("chat.send", { sessionKey: "Hello", message: "hi there", idempotencyKey: runId }, "send-order");
    expect(res.ok).toBe(true);
    expect(res.payload).toEqual({ runId, status: "started" });
    const end = await chatEnd(client, runId);
    expect(end.state).toBe("final");

    const frames = client.received;
    const resIndex = frames.findIndex((f) => f.type === "res" && f.id === "send-order");
    const runIndexes = frames.flatMap((f, i) => (isRunEvent(f, "chat", runId) || isRunEvent(f, "agent", runId) ? [i] : []));
    expect(runIndexes.length).toBeGreaterThan(0);
    expect(resIndex).toBeGreaterThanOrEqual(0);
    expect(Math.min(...runIndexes)).toBeGreaterThan(resIndex);

    const chats = frames.filter((f) => isRunEvent(f, "chat", runId)).map((f) => payload<ChatPayload>(f));
    expect(chats.length).toBeGreaterThan(1);
    expect(chats.map((c) => c.state)).toEqual([...chats.slice(0, -1).map(() => "delta"), "final"]);
    const final = chats.at(-1) as ChatPayload;
    expect(textOf(final.message)).toBe("Echo: hi there");
    expect(final.message?.role).toBe("assistant");
    for (const c of chats) {
      expect(c.sessionKey).toBe("agent:main:hello");
      expect(c.runId).toBe(runId);
    }
    const deltas = chats.filter((c) => c.state === "delta");
    expect(deltas.map((c) => c.deltaText).join("")).toBe("Echo: hi there");
    expect(textOf(deltas.at(-1)?.message)).toBe("Echo: hi there");

    const agents = frames.filter((f) => isRunEvent(f, "agent", runId)).map((f) => payload<AgentPayload>(f));
    expect(agents.map((a) => a.seq)).toEqual(agents.map((_a, i) => i + 1));
    expect(agents[0]).toMatchObject({ stream: "lifecycle", data: { phase: "start" } });
    expect(agents.at(-1)).toMatchObject({ stream: "lifecycle", data: { phase: "end" } });
    const assistant = agents.filter((a) => a.stream === "assistant");
    expect(assistant.at(-1)?.data.text).toBe("Echo: hi there");
    expect(assistant.map((a) => a.data.delta).join("")).toBe("Echo: hi there");
    for (const a of agents) expect(a.sessionKey).toBe("agent:main:hello");

    const seqs = frames.filter((f) => f.type === "event" && f.seq !== undefined).map((f) => f.seq as number);
    expect(seqs.length).toBeGreaterThan(0);
    for (let i = 1; i < seqs.length; i += 1) expect(seqs[i]).toBeGreaterThan(seqs[i - 1] as number);
  });

  it("answers replays: in_flight while running, ok after final, conflict for other input; one user message", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const { res, runId } = await chatSend(client, "idem", "/echo:sleep 300 x");
    expect(res.payload).toEqual({ runId, status: "started" });

    const during = await client.request("chat.send", { sessionKey: "idem", message: "/echo:sleep 300 x", idempotencyKey: runId });
    expect(during.ok).toBe(true);
    expect(during.payload).toEqual({ runId, status: "in_flight" });

    expect((await chatEnd(client, runId)).state).toBe("final");
    const after = await client.request("chat.send", { sessionKey: "idem", message: "/echo:sleep 300 x", idempotencyKey: runId });
    expect(after.ok).toBe(true);
    expect(after.payload).toEqual({ runId, status: "ok" });

    const conflict = await client.request("chat.send", { sessionKey: "idem", message: "something else", idempotencyKey: runId });
    expect(conflict.ok).toBe(false);
    expect(conflict.error?.code).toBe("INVALID_REQUEST");
    expect(conflict.error?.details?.reason).toBe("chat-request-conflict");

    // Replays and conflicts are answered from the run: they create no session, not even under another key.
    const elsewhere = await client.request("chat.send", { sessionKey: "idem-other", message: "/echo:sleep 300 x", idempotencyKey: runId });
    expect(elsewhere.payload).toEqual({ runId, status: "ok" });
    const conflictElsewhere = await client.request("chat.send", { sessionKey: "idem-third", message: "different", idempotencyKey: runId });
    expect(conflictElsewhere.error?.details?.reason).toBe("chat-request-conflict");
    expect((await listSessions(client)).sessions.map((s) => s.key)).toEqual(["agent:main:idem"]);

    const messages = (await history(client, "idem")).messages;
    expect(messages.filter((m) => m.role === "user").map((m) => m.content)).toEqual(["/echo:sleep 300 x"]);
    expect(messages.filter((m) => m.role === "assistant")).toHaveLength(1);
    // The replays started no second run.
    expect(client.received.filter((f) => isRunEvent(f, "chat", runId) && (f.payload as ChatPayload).state === "final")).toHaveLength(1);
  });

  it("replays a failed run as ok:false with payload status error", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const { runId, end } = await chat(client, "fails", "/echo:error boom");
    expect(end.state).toBe("error");
    expect(end.errorMessage).toContain("boom");

    const replay = await client.request("chat.send", { sessionKey: "fails", message: "/echo:error boom", idempotencyKey: runId });
    expect(replay.ok).toBe(false);
    expect(replay.payload).toMatchObject({ runId, status: "error" });
    expect(replay.error?.code).toBe("UNAVAILABLE");
    expect(replay.error?.message).toContain("boom");
    expect((await history(client, "fails")).messages.filter((m) => m.role === "user")).toHaveLength(1);
  });

  it("chat.abort stops a running turn with an aborted event; an idle session reports nothing aborted", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const { res, runId } = await chatSend(client, "abortme", "/echo:sleep 5000 x");
    expect(res.ok).toBe(true);
    const abort = await client.request("chat.abort", { sessionKey: "abortme" });
    expect(abort.ok).toBe(true);
    expect(abort.payload).toEqual({ ok: true, aborted: true, runIds: [runId] });
    const end = await chatEnd(client, runId);
    expect(end.state).toBe("aborted");
    expect(end.sessionKey).toBe("agent:main:abortme");

    expect(await ok(client, "chat.abort", { sessionKey: "abortme" })).toEqual({ ok: true, aborted: false, runIds: [] });
    // An aborted run replays as upstream's aborted ack.
    const replay = await client.request("chat.send", { sessionKey: "abortme", message: "/echo:sleep 5000 x", idempotencyKey: runId });
    expect(replay.ok).toBe(true);
    expect(replay.payload).toMatchObject({ runId, status: "timeout", summary: "aborted" });

    // Aborting on a key never seen answers the same and creates nothing.
    const before = (await listSessions(client)).totalCount;
    expect(await ok(client, "chat.abort", { sessionKey: "never-seen" })).toEqual({ ok: true, aborted: false, runIds: [] });
    expect((await listSessions(client)).totalCount).toBe(before);
  });

  it("timeoutMs bounds a run: a chat error event with errorKind timeout", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const { end } = await chat(client, "slow", "/echo:sleep 5000 x", { timeoutMs: 100 });
    expect(end.state).toBe("error");
    expect(end.errorKind).toBe("timeout");
    expect(end.sessionKey).toBe("agent:main:slow");
  });

  it("workspace:false runs a fresh session without any workspace", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const { end } = await chat(client, "no-ws", "plain", { workspace: false });
    expect(end.state).toBe("final");
    expect(textOf(end.message)).toBe("Echo: plain");
    expect(await leaseDirs(t.root)).toEqual([]);
    const row = (await listSessions(client)).sessions.find((s) => s.key === "agent:main:no-ws");
    expect(row).toMatchObject({ workspaceMode: "none", workspaceDir: null });
    expect((await workspaces(client, { sessionKey: "no-ws" })).leases).toEqual([]);
  });
});

// ----- chat.history -------------------------------------------------------------------------

describe("chat.history", () => {
  it("returns user and assistant messages in order with __openclaw.seq", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    await chat(client, "Talk", "first");
    await chat(client, "talk", "second");
    const result = await history(client, "Talk");
    expect(result.sessionKey).toBe("Talk");
    const row = (await listSessions(client)).sessions.find((s) => s.key === "agent:main:talk");
    expect(result.sessionId).toBe(row?.sessionId);
    expect(result.messages.map((m) => m.role)).toEqual(["user", "assistant", "user", "assistant"]);
    expect(result.messages.map((m) => m.__openclaw.seq)).toEqual([1, 2, 3, 4]);
    expect(result.messages[0]?.content).toBe("first");
    expect(result.messages[1]?.content).toEqual([{ type: "text", text: "Echo: first" }]);
    expect(result.messages[2]?.content).toBe("second");
    expect(result.messages[3]?.content).toEqual([{ type: "text", text: "Echo: second" }]);
    expect(new Set(result.messages.map((m) => m.__openclaw.id)).size).toBe(4);
  });

  it("limit returns the newest messages, oldest first", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    await chat(client, "tail", "one");
    await chat(client, "tail", "two");
    const result = await ok<History & { totalMessages: number }>(client, "chat.history", { sessionKey: "tail", limit: 2 });
    expect(result.messages.map((m) => m.content)).toEqual(["two", [{ type: "text", text: "Echo: two" }]]);
    expect(result.messages.map((m) => m.__openclaw.seq)).toEqual([3, 4]);
    expect(result.totalMessages).toBe(4);
  });

  it("a never-seen key has an empty history and creates no session", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    await chat(client, "exists", "hello");
    const before = await listSessions(client);
    expect(before.totalCount).toBe(1);
    const result = await history(client, "nobody-here");
    expect(result.messages).toEqual([]);
    expect(result.sessionId).toBeNull();
    const after = await listSessions(client);
    expect(after.totalCount).toBe(1);
    expect(after.sessions.map((s) => s.key)).toEqual(["agent:main:exists"]);
  });
});

// ----- sessions.* ---------------------------------------------------------------------------

describe("sessions", () => {
  it("sessions.create without key makes a labelled dashboard session; list shows it; patch relabels it", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const created = await ok<{ ok: boolean; key: string; sessionId: string; runStarted: boolean; entry: SessionRow }>(client, "sessions.create", { label: "My Board" });
    expect(created.ok).toBe(true);
    expect(created.key).toMatch(/^agent:main:dashboard:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(created.runStarted).toBe(false);
    expect(created.entry).toMatchObject({ key: created.key, label: "My Board", sessionId: created.sessionId });

    const listed = (await listSessions(client)).sessions.find((s) => s.key === created.key);
    expect(listed).toMatchObject({ label: "My Board", sessionId: created.sessionId, agentId: "main" });

    const patched = await ok<{ ok: boolean; key: string; entry: SessionRow }>(client, "sessions.patch", { key: created.key, label: "Renamed" });
    expect(patched).toMatchObject({ ok: true, key: created.key, entry: { label: "Renamed" } });
    expect((await listSessions(client)).sessions.find((s) => s.key === created.key)?.label).toBe("Renamed");
  });

  it("sessions.create with a message starts a run", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const created = await ok<{ key: string; runStarted: boolean; runId?: string }>(client, "sessions.create", { key: "Board-1", message: "hello board" });
    expect(created.key).toBe("agent:main:board-1");
    expect(created.runStarted).toBe(true);
    expect(typeof created.runId).toBe("string");
    const end = await chatEnd(client, created.runId as string);
    expect(end).toMatchObject({ state: "final", sessionKey: "agent:main:board-1" });
    expect(textOf(end.message)).toBe("Echo: hello board");
    expect((await history(client, "board-1")).messages.map((m) => m.role)).toEqual(["user", "assistant"]);
  });

  it("sessions.changed goes to subscribed connections only (create, patch, delete)", async () => {
    const t = await startTestGateway();
    const subscribed = await connect(t.url);
    const bystander = await connect(t.url);
    const admin = await connect(t.url, ADMIN);
    expect(await ok(subscribed, "sessions.subscribe", {})).toEqual({ subscribed: true });

    await ok(admin, "sessions.create", { key: "sub-1" });
    expect(payload(await subscribed.nextEvent("sessions.changed"))).toMatchObject({ sessionKey: "agent:main:sub-1", reason: "create" });

    await ok(admin, "sessions.patch", { key: "sub-1", label: "L" });
    expect(payload(await subscribed.nextEvent("sessions.changed"))).toMatchObject({ sessionKey: "agent:main:sub-1", reason: "patch", session: { label: "L" } });

    expect(await ok(admin, "sessions.delete", { key: "sub-1" })).toMatchObject({ ok: true, deleted: true });
    const deleted = payload<Record<string, unknown>>(await subscribed.nextEvent("sessions.changed"));
    expect(deleted).toMatchObject({ sessionKey: "agent:main:sub-1", reason: "delete" });
    expect(typeof deleted.sessionId).toBe("string");

    // A round trip on the bystander comes after any event written to it before.
    await ok(bystander, "health", {});
    expect(bystander.received.filter((f) => f.type === "event" && f.event === "sessions.changed")).toEqual([]);
    expect(admin.received.filter((f) => f.type === "event" && f.event === "sessions.changed")).toEqual([]);
  });

  it("sessions.reset (admin) empties the history and keeps the session", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url, ADMIN);
    await chat(client, "resettable", "one");
    const before = await history(client, "resettable");
    expect(before.messages).toHaveLength(2);
    const reset = await ok<{ ok: boolean; key: string }>(client, "sessions.reset", { key: "resettable" });
    expect(reset).toMatchObject({ ok: true, key: "agent:main:resettable" });
    const after = await history(client, "resettable");
    expect(after.messages).toEqual([]);
    expect(after.sessionId).toBe(before.sessionId);
    expect((await listSessions(client)).sessions.map((s) => s.key)).toContain("agent:main:resettable");
    // Its workspace was released with the reset.
    expect(await leaseDirs(t.root)).toEqual([]);
  });

  it("sessions.delete (admin) removes the session and releases its workspace", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url, ADMIN);
    await chat(client, "doomed", "bye");
    expect(await leaseDirs(t.root)).toHaveLength(1);
    expect(await ok(client, "sessions.delete", { key: "doomed" })).toMatchObject({ ok: true, key: "agent:main:doomed", deleted: true });
    expect((await listSessions(client)).sessions.map((s) => s.key)).not.toContain("agent:main:doomed");
    expect(await leaseDirs(t.root)).toEqual([]);
    expect((await workspaces(client, { sessionKey: "doomed" })).leases.map((l) => l.state)).toEqual(["released"]);
    expect(await ok(client, "sessions.delete", { key: "doomed" })).toMatchObject({ ok: true, deleted: false });
  });

  it("sessions.delete with archivedOnly (write scope) deletes no live session", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    await chat(client, "not-archived", "still here");
    expect(await leaseDirs(t.root)).toHaveLength(1);
    const res = await client.request("sessions.delete", { key: "not-archived", archivedOnly: true });
    expect(res.ok, JSON.stringify(res.error)).toBe(true);
    expect(res.payload).toMatchObject({ ok: true, key: "agent:main:not-archived", deleted: false });
    expect((await listSessions(client)).sessions.map((s) => s.key)).toContain("agent:main:not-archived");
    expect((await history(client, "not-archived")).messages).toHaveLength(2);
    expect(await leaseDirs(t.root)).toHaveLength(1);
  });

  it("sessions.delete and sessions.reset need operator.admin", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    await chat(client, "guarded", "keep me");
    for (const method of ["sessions.delete", "sessions.reset"]) {
      const res = await client.request(method, { key: "guarded" });
      expect(res.ok, method).toBe(false);
      expect(res.error?.code).toBe("FORBIDDEN");
      expect(res.error?.message).toBe("missing scope: operator.admin");
    }
    expect((await listSessions(client)).sessions.map((s) => s.key)).toContain("agent:main:guarded");
    expect((await history(client, "guarded")).messages).toHaveLength(2);
  });
});

// ----- scopes and delivery ------------------------------------------------------------------

describe("scopes and delivery", () => {
  it("a read-only connection reads and observes every run but cannot write", async () => {
    const t = await startTestGateway();
    const writer = await connect(t.url);
    const reader = await connect(t.url, ["operator.read"]);
    const { runId, end } = await chat(writer, "shared", "for everyone");
    expect(end.state).toBe("final");
    // chat and agent events go to every read-scoped connection, not just the one that started the run.
    const seen = payload<ChatPayload>(await reader.next((f) => isRunEvent(f, "chat", runId) && (f.payload as ChatPayload).state === "final"));
    expect(textOf(seen.message)).toBe("Echo: for everyone");
    expect(reader.received.some((f) => isRunEvent(f, "agent", runId))).toBe(true);

    expect((await listSessions(reader)).sessions.map((s) => s.key)).toEqual(["agent:main:shared"]);
    expect((await history(reader, "shared")).messages).toHaveLength(2);
    for (const [method, params] of [
      ["chat.send", { sessionKey: "shared", message: "no", idempotencyKey: randomUUID() }],
      ["chat.abort", { sessionKey: "shared" }],
      ["sessions.create", { key: "mine" }],
      ["sessions.patch", { key: "shared", label: "x" }],
      ["agent", { message: "no", idempotencyKey: randomUUID() }],
    ] as const) {
      const res = await reader.request(method, params);
      expect(res.ok, method).toBe(false);
      expect(res.error?.code, method).toBe("FORBIDDEN");
      expect(res.error?.message, method).toBe("missing scope: operator.write");
    }
    expect((await listSessions(reader)).sessions.map((s) => s.key)).toEqual(["agent:main:shared"]);
  });

  it("sessions.list pages newest first", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    await chat(client, "older", "1");
    await chat(client, "newer", "2");
    const first = await ok<SessionsList & { hasMore: boolean; nextOffset: number | null }>(client, "sessions.list", { limit: 1 });
    expect(first).toMatchObject({ count: 1, totalCount: 2, hasMore: true, nextOffset: 1 });
    expect(first.sessions.map((s) => s.key)).toEqual(["agent:main:newer"]);
    const second = await ok<SessionsList & { hasMore: boolean; nextOffset: number | null }>(client, "sessions.list", { limit: 1, offset: 1 });
    expect(second).toMatchObject({ count: 1, hasMore: false, nextOffset: null });
    expect(second.sessions.map((s) => s.key)).toEqual(["agent:main:older"]);
  });
});

// ----- agent / agent.wait -------------------------------------------------------------------

describe("agent", () => {
  it("answers twice with the same id: accepted, then ok with the reply", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const id = `agent-${randomUUID()}`;
    const interim = await client.request("agent", { message: "hi agent", sessionKey: "agent-test", idempotencyKey: id }, id);
    expect(interim.ok).toBe(true);
    expect(interim.payload).toMatchObject({ runId: id, status: "accepted", sessionKey: "agent:main:agent-test", agentId: "main" });
    const final = (await client.next((f) => f.type === "res" && f.id === id)) as ResFrame;
    expect(final.ok).toBe(true);
    expect(final.payload).toMatchObject({ runId: id, status: "ok", summary: "completed", result: { payloads: [{ text: "Echo: hi agent" }] } });

    const frames = client.received;
    const interimIndex = frames.indexOf(interim);
    const finalIndex = frames.indexOf(final);
    const agentIndexes = frames.flatMap((f, i) => (isRunEvent(f, "agent", id) ? [i] : []));
    expect(agentIndexes.length).toBeGreaterThan(0);
    expect(Math.min(...agentIndexes)).toBeGreaterThan(interimIndex);
    expect(Math.max(...agentIndexes)).toBeLessThan(finalIndex);
    const assistant = agentIndexes.map((i) => payload<AgentPayload>(frames[i] as Frame)).filter((a) => a.stream === "assistant");
    expect(assistant.at(-1)?.data.text).toBe("Echo: hi agent");

    // A replay after the end answers once with the stored result.
    const replay = await client.request("agent", { message: "hi agent", sessionKey: "agent-test", idempotencyKey: id });
    expect(replay.payload).toMatchObject({ runId: id, status: "ok", result: { payloads: [{ text: "Echo: hi agent" }] } });
    expect((await history(client, "agent-test")).messages.filter((m) => m.role === "user")).toHaveLength(1);
  });

  it("without sessionKey runs on the main session", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const id = randomUUID();
    const interim = await client.request("agent", { message: "to main", idempotencyKey: id }, id);
    expect(interim.payload).toMatchObject({ status: "accepted", sessionKey: "agent:main:main" });
    const final = (await client.next((f) => f.type === "res" && f.id === id)) as ResFrame;
    expect(final.payload).toMatchObject({ status: "ok" });
    expect((await history(client, "main")).messages.map((m) => m.role)).toEqual(["user", "assistant"]);
  });

  it("agentId without sessionKey runs on that agent's main session", async () => {
    const t = await startTestGateway({ agents: ["main", "ops"] });
    const client = await connect(t.url);
    const id = randomUUID();
    const interim = await client.request("agent", { message: "ops work", agentId: "ops", idempotencyKey: id }, id);
    expect(interim.payload).toMatchObject({ status: "accepted", sessionKey: "agent:ops:main", agentId: "ops" });
    const final = (await client.next((f) => f.type === "res" && f.id === id)) as ResFrame;
    expect(final.payload).toMatchObject({ status: "ok", result: { payloads: [{ text: "Echo: ops work" }] } });
  });

  it("a failing run ends with ok:false and payload status error", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const id = randomUUID();
    const interim = await client.request("agent", { message: "/echo:error x", sessionKey: "agent-fail", idempotencyKey: id }, id);
    expect(interim.payload).toMatchObject({ status: "accepted" });
    const final = (await client.next((f) => f.type === "res" && f.id === id)) as ResFrame;
    expect(final.ok).toBe(false);
    expect(final.payload).toMatchObject({ runId: id, status: "error" });
    expect(final.error?.code).toBe("UNAVAILABLE");
    const lifecycle = client.received.filter((f) => isRunEvent(f, "agent", id)).map((f) => payload<AgentPayload>(f));
    expect(lifecycle.at(-1)).toMatchObject({ stream: "lifecycle", data: { phase: "error" } });
  });

  it("agent.wait reports a finished run; an unknown runId is an error", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const { runId } = await chat(client, "waited", "done soon");
    const waited = await ok<{ runId: string; status: string; endedAt: number }>(client, "agent.wait", { runId });
    expect(waited).toMatchObject({ runId, status: "ok" });
    expect(typeof waited.endedAt).toBe("number");

    const { runId: failedId } = await chat(client, "waited", "/echo:error nope");
    expect(await ok(client, "agent.wait", { runId: failedId })).toMatchObject({ runId: failedId, status: "error" });

    const unknown = await client.request("agent.wait", { runId: "no-such-run" });
    expect(unknown.ok).toBe(false);
    expect(unknown.error?.code).toBe("INVALID_REQUEST");
    expect(unknown.error?.details?.code).toBe("RUN_NOT_FOUND");
  });
});

// ----- agents, health, status, workspaces ---------------------------------------------------

describe("agents.list, health, status, workspaces", () => {
  it("agents.list names the default and every configured agent", async () => {
    const t = await startTestGateway({ agents: ["main", "ops"] });
    const client = await connect(t.url);
    const agents = await ok<{ defaultId: string; mainKey: string; agents: { id: string }[] }>(client, "agents.list", {});
    expect(agents.defaultId).toBe("main");
    expect(agents.mainKey).toBe("main");
    expect(agents.agents.map((a) => a.id).sort()).toEqual(["main", "ops"]);
    // The second agent is usable.
    const { end } = await chat(client, "agent:ops:Job", "for ops");
    expect(end).toMatchObject({ state: "final", sessionKey: "agent:ops:job" });
  });

  it("health is ok and status reports the runtime version", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    expect(await ok(client, "health", {})).toMatchObject({ ok: true, defaultAgentId: "main" });
    const status = await ok<{ runtimeVersion: string }>(client, "status", {});
    expect(status.runtimeVersion).toBe(GATEWAY_VERSION);
  });

  it("workspaces.list shows the configured root and a live ephemeral lease after a chat on a fresh key", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const empty = await workspaces(client);
    expect(empty.root).toBe(t.root);
    expect(empty.leases).toEqual([]);

    await chat(client, "leased", "hello");
    const listed = await workspaces(client);
    expect(listed.root).toBe(t.root);
    const lease = listed.leases.find((l) => l.sessionKey === "agent:main:leased");
    expect(lease).toMatchObject({ kind: "ephemeral", mode: "ephemeral", state: "live" });
    expect(path.dirname(lease?.path as string)).toBe(t.root);
    expect(existsSync(lease?.path as string)).toBe(true);
    expect(await leaseDirs(t.root)).toEqual([path.basename(lease?.path as string)]);
    const row = (await listSessions(client)).sessions.find((s) => s.key === "agent:main:leased");
    expect(row).toMatchObject({ workspaceMode: "ephemeral", workspaceDir: lease?.path });
  });

  it("workspaces.gc dryRun (admin) plans without removing; without admin it is forbidden", async () => {
    const t = await startTestGateway();
    const admin = await connect(t.url, ADMIN);
    await chat(admin, "gc-kept", "hello");
    const [dir] = await leaseDirs(t.root);
    expect(dir).toBeDefined();
    const report = await ok<{ root: string; dryRun: boolean; reclaimed: number; entries: { path: string; action: string }[] }>(admin, "workspaces.gc", { dryRun: true });
    expect(report.root).toBe(t.root);
    expect(report.dryRun).toBe(true);
    expect(report.reclaimed).toBe(0);
    expect(report.entries).toContainEqual(expect.objectContaining({ path: path.join(t.root, dir as string), action: "keep" }));
    expect(await leaseDirs(t.root)).toEqual([dir]);

    const writer = await connect(t.url);
    const denied = await writer.request("workspaces.gc", { dryRun: true });
    expect(denied.ok).toBe(false);
    expect(denied.error?.code).toBe("FORBIDDEN");
    expect(denied.error?.message).toBe("missing scope: operator.admin");
  });
});

// ----- unknown agents -----------------------------------------------------------------------

describe("unknown agents", () => {
  it("every method refuses an unconfigured agent and leaves nothing behind", async () => {
    const t = await startTestGateway({ agents: ["main", "ops"] });
    const client = await connect(t.url, ADMIN);
    const attempts: [string, Record<string, unknown>][] = [
      ["chat.send", { sessionKey: "agent:ghost:x", message: "hi", idempotencyKey: "g1" }],
      ["chat.send", { sessionKey: "AGENT:Ghost:Y", message: "hi", idempotencyKey: "g2" }],
      ["chat.send", { sessionKey: "x", agentId: "ghost", message: "hi", idempotencyKey: "g3" }],
      ["agent", { agentId: "ghost", message: "hi", idempotencyKey: "g4" }],
      ["agent", { sessionKey: "agent:ghost:x", message: "hi", idempotencyKey: "g5" }],
      ["sessions.patch", { key: "agent:ghost:x", label: "boo" }],
      ["sessions.reset", { key: "agent:ghost:x" }],
      ["sessions.delete", { key: "agent:ghost:x" }],
      ["sessions.create", { agentId: "ghost" }],
      ["sessions.create", { agentId: "ghost", message: "hi" }],
      ["sessions.create", { key: "agent:ghost:z", message: "hi" }],
      ["chat.history", { sessionKey: "agent:ghost:x" }],
      ["chat.abort", { sessionKey: "agent:ghost:x" }],
      ["sessions.list", { agentId: "ghost" }],
    ];
    for (const [method, params] of attempts) {
      const res = await client.request(method, params);
      expect(res.ok, `${method} ${JSON.stringify(params)}`).toBe(false);
      expect(res.error?.code, method).toBe("INVALID_REQUEST");
      expect(res.error?.message, method).toContain('Agent "ghost" no longer exists in configuration');
    }
    const first = await client.request("chat.send", { sessionKey: "agent:ghost:x", message: "hi", idempotencyKey: "g1" });
    expect(first.error?.message).toBe('Agent "ghost" no longer exists in configuration');

    expect(await leaseDirs(t.root)).toEqual([]);
    const sessions = await listSessions(client);
    expect(sessions.sessions.filter((s) => s.key.includes("ghost"))).toEqual([]);
    expect(sessions.totalCount).toBe(0);
    expect((await workspaces(client)).leases).toEqual([]);
    expect((await walk(t.dir)).filter((p) => path.basename(p).includes("ghost"))).toEqual([]);
    // No run was recorded under any of those idempotency keys.
    const wait = await client.request("agent.wait", { runId: "g1" });
    expect(wait.error?.details?.code).toBe("RUN_NOT_FOUND");
  });
});

// ----- session keys -------------------------------------------------------------------------

describe("session keys", () => {
  it("bare keys are lower-cased under the default agent; main maps to the main session", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    expect((await chat(client, "MyTopic2", "a")).end.sessionKey).toBe("agent:main:mytopic2");
    expect((await chat(client, "main", "b")).end.sessionKey).toBe("agent:main:main");
    expect((await chat(client, "AGENT:MAIN:MAIN", "c")).end.sessionKey).toBe("agent:main:main");
    const keys = (await listSessions(client)).sessions.map((s) => s.key).sort();
    expect(keys).toEqual(["agent:main:main", "agent:main:mytopic2"]);
    expect((await history(client, "main")).messages.filter((m) => m.role === "user").map((m) => m.content)).toEqual(["b", "c"]);
  });

  it("malformed agent keys are refused and create nothing", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    for (const sessionKey of ["agent::foo", "agent:main:", "agent:main", "   "]) {
      const { res } = await chatSend(client, sessionKey, "hi");
      expect(res.ok, sessionKey).toBe(false);
      expect(res.error?.code, sessionKey).toBe("INVALID_REQUEST");
    }
    expect((await listSessions(client)).totalCount).toBe(0);
    expect(await leaseDirs(t.root)).toEqual([]);
  });

  it("a hostile key is a plain session key whose workspace is a direct child of the root", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const hostile = ["../../etc/passwd", "/etc/passwd", "..\\..\\x", "a/../../b"];
    for (const key of hostile) {
      const { end } = await chat(client, key, "safe?");
      expect(end.state, key).toBe("final");
      expect(end.sessionKey).toBe(`agent:main:${key.toLowerCase()}`);
    }
    const leases = (await workspaces(client)).leases;
    expect(leases).toHaveLength(hostile.length);
    for (const lease of leases) {
      expect(lease.state).toBe("live");
      expect(path.dirname(lease.path as string)).toBe(t.root);
      expect(existsSync(lease.path as string)).toBe(true);
    }
    expect(await leaseDirs(t.root)).toHaveLength(hostile.length);
    expect((await walk(t.dir)).filter((p) => ["passwd", "etc", "b", "x"].includes(path.basename(p)))).toEqual([]);
    expect((await history(client, "../../etc/passwd")).messages.map((m) => m.role)).toEqual(["user", "assistant"]);
  });
});

// ----- auth ---------------------------------------------------------------------------------

describe("auth", () => {
  it("a wrong token fails connect with AUTH_TOKEN_MISMATCH", async () => {
    const t = await startTestGateway();
    const { res, close } = await failedConnect(t.url, connectParams({ auth: { token: "not-the-token" } }));
    expect(res.ok).toBe(false);
    expect(res.error?.code).toBe("INVALID_REQUEST");
    expect(res.error?.details?.code).toBe("AUTH_TOKEN_MISMATCH");
    expect(close.code).toBe(1008);
  });
});
