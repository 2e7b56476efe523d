import { describe, expect, it, onTestFinished } from "vitest";
import { GatewayError } from "../../src/errors.ts";
import { LATEST_SCHEMA_VERSION, type LeaseRecord, type NewLease, type SessionRecord, type Store } from "../../src/store/index.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

export function session(key: string, overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    key,
    sessionId: `sid-${key}`,
    agentId: "main",
    label: null,
    createdVia: "operator",
    workspaceMode: "ephemeral",
    createdAt: 1_000,
    updatedAt: 1_000,
    lastInteractionAt: null,
    ...overrides,
  };
}

export function lease(leaseId: string, overrides: Partial<NewLease> = {}): NewLease {
  return {
    leaseId,
    sessionKey: "agent:main:a",
    kind: "ephemeral",
    mode: "ephemeral",
    path: `/tmp/openclaw-0/${leaseId}`,
    instanceId: "inst-1",
    createdAt: 1_000,
    ...overrides,
  };
}

function seqs(store: Store, key: string, query?: { limit?: number; offset?: number }): number[] {
  return store.listMessages(key, query).messages.map((m) => m.seq);
}

/**
 * The behaviour every {@link Store} must have. `create` returns a fresh, empty store each call
 * (the suite closes it when the test ends).
 */
export function testStore(name: string, create: () => Store): void {
  function open(): Store {
    const store = create();
    onTestFinished(() => store.close());
    return store;
  }

  describe(`Store contract: ${name}`, () => {
    it("reports the newest schema version", () => {
      const store = open();
      expect(store.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
      expect(store.schemaVersion).toBeGreaterThanOrEqual(1);
    });

    describe("sessions", () => {
      it("inserts and reads back a session; a missing key is undefined", () => {
        const store = open();
        const record = session("agent:main:a", { label: "Work", createdVia: "implicit", workspaceMode: "none", lastInteractionAt: 1_500 });
        expect(store.insertSession(record)).toBe(true);
        expect(store.getSession("agent:main:a")).toEqual(record);
        expect(store.getSession("agent:main:missing")).toBeUndefined();
      });

      it("insertSession of an existing key returns false and keeps the first row", () => {
        const store = open();
        expect(store.insertSession(session("k", { label: "first" }))).toBe(true);
        expect(store.insertSession(session("k", { label: "second", agentId: "other" }))).toBe(false);
        expect(store.getSession("k")).toMatchObject({ label: "first", agentId: "main" });
      });

      it("insertSession still rejects an invalid row rather than ignoring it", () => {
        const store = open();
        const bad = { ...session("k"), createdVia: "bogus" } as unknown as SessionRecord;
        expect(() => store.insertSession(bad)).toThrow(/CHECK constraint/);
        expect(store.getSession("k")).toBeUndefined();
      });

      it("patchSession sets only the given fields, null clears the label, undefined leaves it", () => {
        const store = open();
        store.insertSession(session("k", { label: "old" }));
        const patched = store.patchSession("k", { updatedAt: 2_000, lastInteractionAt: 1_900, workspaceMode: "persistent", sessionId: "sid-2" });
        expect(patched).toEqual(session("k", { label: "old", updatedAt: 2_000, lastInteractionAt: 1_900, workspaceMode: "persistent", sessionId: "sid-2" }));
        expect(store.patchSession("k", { label: undefined })?.label).toBe("old");
        expect(store.patchSession("k", { label: null })?.label).toBeNull();
        expect(store.patchSession("k", { label: "new" })?.label).toBe("new");
        expect(store.patchSession("k", {})).toEqual(store.getSession("k"));
        expect(store.getSession("k")).toMatchObject({ label: "new", updatedAt: 2_000, createdAt: 1_000 });
      });

      it("patchSession of a missing key returns undefined and creates nothing", () => {
        const store = open();
        expect(store.patchSession("nope", { label: "x" })).toBeUndefined();
        expect(store.getSession("nope")).toBeUndefined();
        expect(store.listSessions().total).toBe(0);
      });

      it("deleteSession removes the session and its messages but keeps its leases and runs", () => {
        const store = open();
        store.insertSession(session("k"));
        store.insertSession(session("other"));
        store.appendMessage({ sessionKey: "k", role: "user", content: "hi", runId: null, idempotencyKey: null, createdAt: 1 });
        store.appendMessage({ sessionKey: "other", role: "user", content: "hi", runId: null, idempotencyKey: null, createdAt: 1 });
        store.insertRun({ runId: "r1", sessionKey: "k", kind: "chat", inputHash: "h", startedAt: 1 });
        store.recordLease(lease("l1", { sessionKey: "k" }));

        expect(store.deleteSession("k")).toBe(true);
        expect(store.getSession("k")).toBeUndefined();
        expect(store.listMessages("k")).toEqual({ messages: [], total: 0 });
        expect(store.listMessages("other").total).toBe(1);
        expect(store.getRun("r1")?.sessionKey).toBe("k");
        expect(store.getLease("l1")?.sessionKey).toBe("k");
        expect(store.deleteSession("k")).toBe(false);
      });

      it("a re-created session starts its transcript again at seq 1", () => {
        const store = open();
        store.insertSession(session("k"));
        store.appendMessage({ sessionKey: "k", role: "user", content: 1, runId: null, idempotencyKey: null, createdAt: 1 });
        store.appendMessage({ sessionKey: "k", role: "user", content: 2, runId: null, idempotencyKey: null, createdAt: 1 });
        store.deleteSession("k");
        store.insertSession(session("k"));
        expect(store.appendMessage({ sessionKey: "k", role: "user", content: 3, runId: null, idempotencyKey: null, createdAt: 1 }).seq).toBe(1);
      });

      it("listSessions orders by updatedAt, newest first, and pages with a full total", () => {
        const store = open();
        store.insertSession(session("a", { updatedAt: 300 }));
        store.insertSession(session("b", { updatedAt: 100 }));
        store.insertSession(session("c", { updatedAt: 200 }));
        store.insertSession(session("d", { updatedAt: 400 }));
        expect(store.listSessions().rows.map((s) => s.key)).toEqual(["d", "a", "c", "b"]);
        const page = store.listSessions({ limit: 2, offset: 1 });
        expect(page.rows.map((s) => s.key)).toEqual(["a", "c"]);
        expect(page.total).toBe(4);
        expect(store.listSessions({ offset: 10 })).toEqual({ rows: [], total: 4 });
        expect(store.listSessions({ limit: 0 }).rows).toEqual([]);
        store.patchSession("b", { updatedAt: 500 });
        expect(store.listSessions({ limit: 1 }).rows[0]?.key).toBe("b");
      });

      it("listSessions returns 100 rows by default", () => {
        const store = open();
        store.transaction(() => {
          for (let i = 0; i < 105; i += 1) store.insertSession(session(`s${i}`, { updatedAt: i }));
        });
        const { rows, total } = store.listSessions();
        expect(total).toBe(105);
        expect(rows).toHaveLength(100);
        expect(rows[0]?.key).toBe("s104");
      });

      it("listSessions filters by agentId and by a case-insensitive search of key or label", () => {
        const store = open();
        store.insertSession(session("agent:main:Alpha", { updatedAt: 1 }));
        store.insertSession(session("agent:ops:beta", { agentId: "ops", label: "Deploy NOTES", updatedAt: 2 }));
        store.insertSession(session("agent:ops:gamma", { agentId: "ops", label: "Éclair", updatedAt: 3 }));
        store.insertSession(session("agent:main:50%_off", { updatedAt: 4 }));

        expect(store.listSessions({ agentId: "ops" }).rows.map((s) => s.key)).toEqual(["agent:ops:gamma", "agent:ops:beta"]);
        expect(store.listSessions({ search: "ALPHA" }).rows.map((s) => s.key)).toEqual(["agent:main:Alpha"]);
        expect(store.listSessions({ search: "notes" }).rows.map((s) => s.key)).toEqual(["agent:ops:beta"]);
        expect(store.listSessions({ search: "éCLAIR" }).rows.map((s) => s.key)).toEqual(["agent:ops:gamma"]);
        // A literal substring, not a LIKE pattern.
        expect(store.listSessions({ search: "%_" }).rows.map((s) => s.key)).toEqual(["agent:main:50%_off"]);
        expect(store.listSessions({ search: "_x" }).total).toBe(0);
        const both = store.listSessions({ agentId: "main", search: "agent:", limit: 1 });
        expect(both.rows.map((s) => s.key)).toEqual(["agent:main:50%_off"]);
        expect(both.total).toBe(2);
        expect(store.listSessions({ agentId: "nobody" })).toEqual({ rows: [], total: 0 });
      });
    });

    describe("transcript", () => {
      it("appendMessage numbers 1, 2, 3 per session independently and returns the stored record", () => {
        const store = open();
        store.insertSession(session("a"));
        store.insertSession(session("b"));
        const first = store.appendMessage({ sessionKey: "a", role: "user", content: { text: "hi", parts: [1, null, true] }, runId: "r1", idempotencyKey: "idem-1", createdAt: 10 });
        expect(first).toEqual({ id: expect.stringMatching(UUID), sessionKey: "a", seq: 1, role: "user", content: { text: "hi", parts: [1, null, true] }, runId: "r1", idempotencyKey: "idem-1", createdAt: 10 });
        expect(store.appendMessage({ sessionKey: "b", role: "assistant", content: "x", runId: null, idempotencyKey: null, createdAt: 11 }).seq).toBe(1);
        expect(store.appendMessage({ sessionKey: "a", role: "assistant", content: "y", runId: null, idempotencyKey: null, createdAt: 12 }).seq).toBe(2);
        const third = store.appendMessage({ sessionKey: "a", role: "custom", content: null, runId: null, idempotencyKey: null, createdAt: 13 });
        expect(third.seq).toBe(3);
        expect(third.id).not.toBe(first.id);
        expect(store.listMessages("a").messages).toEqual([first, expect.objectContaining({ seq: 2, content: "y" }), third]);
        expect(seqs(store, "b")).toEqual([1]);
      });

      it("content reads back as its JSON form", () => {
        const store = open();
        store.insertSession(session("a"));
        const appended = store.appendMessage({ sessionKey: "a", role: "user", content: { at: new Date(0), skip: undefined }, runId: null, idempotencyKey: null, createdAt: 1 });
        const undef = store.appendMessage({ sessionKey: "a", role: "user", content: undefined, runId: null, idempotencyKey: null, createdAt: 1 });
        expect(appended.content).toEqual({ at: "1970-01-01T00:00:00.000Z" });
        expect(undef.content).toBeNull();
        expect(store.listMessages("a").messages.map((m) => m.content)).toEqual([{ at: "1970-01-01T00:00:00.000Z" }, null]);
      });

      it("appendMessage to a missing session throws SESSION_NOT_FOUND and stores nothing", () => {
        const store = open();
        const attempt = (): unknown => store.appendMessage({ sessionKey: "ghost", role: "user", content: "hi", runId: null, idempotencyKey: null, createdAt: 1 });
        expect(attempt).toThrow(GatewayError);
        expect(attempt).toThrow(expect.objectContaining({ code: "SESSION_NOT_FOUND" }));
        expect(store.listMessages("ghost").total).toBe(0);
      });

      it("listMessages returns the tail by default and a page from the start with an offset", () => {
        const store = open();
        store.insertSession(session("a"));
        for (let i = 0; i < 10; i += 1) store.appendMessage({ sessionKey: "a", role: "user", content: i, runId: null, idempotencyKey: null, createdAt: i });
        expect(seqs(store, "a")).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        expect(seqs(store, "a", { limit: 3 })).toEqual([8, 9, 10]);
        expect(store.listMessages("a", { limit: 3 }).total).toBe(10);
        expect(seqs(store, "a", { limit: 3, offset: 2 })).toEqual([3, 4, 5]);
        expect(seqs(store, "a", { offset: 0, limit: 2 })).toEqual([1, 2]);
        expect(seqs(store, "a", { offset: 8 })).toEqual([9, 10]);
        expect(seqs(store, "a", { offset: 20 })).toEqual([]);
        expect(seqs(store, "a", { limit: 0 })).toEqual([]);
        expect(seqs(store, "a", { limit: 50 })).toHaveLength(10);
        expect(store.listMessages("nobody")).toEqual({ messages: [], total: 0 });
      });

      it("listMessages defaults to the last 200 and never returns more than 1000", () => {
        const store = open();
        store.insertSession(session("a"));
        store.transaction(() => {
          for (let i = 0; i < 1005; i += 1) store.appendMessage({ sessionKey: "a", role: "user", content: i, runId: null, idempotencyKey: null, createdAt: i });
        });
        const byDefault = store.listMessages("a");
        expect(byDefault.total).toBe(1005);
        expect(byDefault.messages).toHaveLength(200);
        expect(byDefault.messages[0]?.seq).toBe(806);
        expect(byDefault.messages.at(-1)?.seq).toBe(1005);
        const capped = store.listMessages("a", { limit: 5000 });
        expect(capped.messages).toHaveLength(1000);
        expect(capped.messages[0]?.seq).toBe(6);
      });

      it("clearMessages deletes one session's messages, returns the count, and seq restarts at 1", () => {
        const store = open();
        store.insertSession(session("a"));
        store.insertSession(session("b"));
        for (let i = 0; i < 3; i += 1) store.appendMessage({ sessionKey: "a", role: "user", content: i, runId: null, idempotencyKey: null, createdAt: i });
        store.appendMessage({ sessionKey: "b", role: "user", content: "b", runId: null, idempotencyKey: null, createdAt: 1 });
        expect(store.clearMessages("a")).toBe(3);
        expect(store.clearMessages("a")).toBe(0);
        expect(store.listMessages("a").total).toBe(0);
        expect(store.listMessages("b").total).toBe(1);
        expect(store.getSession("a")).toBeDefined();
        expect(store.appendMessage({ sessionKey: "a", role: "user", content: "again", runId: null, idempotencyKey: null, createdAt: 9 }).seq).toBe(1);
      });
    });

    describe("runs", () => {
      it("insertRun records a running run; a second insert of the runId returns false", () => {
        const store = open();
        expect(store.insertRun({ runId: "r1", sessionKey: "k", kind: "agent", inputHash: "h1", startedAt: 100 })).toBe(true);
        expect(store.insertRun({ runId: "r1", sessionKey: "other", kind: "chat", inputHash: "h2", startedAt: 200 })).toBe(false);
        expect(store.getRun("r1")).toEqual({
          runId: "r1",
          sessionKey: "k",
          kind: "agent",
          inputHash: "h1",
          status: "running",
          summary: null,
          replyText: null,
          errorMessage: null,
          startedAt: 100,
          endedAt: null,
        });
        expect(store.getRun("r2")).toBeUndefined();
      });

      it("finishRun ends a running run once; the first end wins", () => {
        const store = open();
        store.insertRun({ runId: "r1", sessionKey: "k", kind: "chat", inputHash: "h", startedAt: 100 });
        expect(store.finishRun("r1", { status: "ok", summary: "done", replyText: "Hello", endedAt: 150 })).toBe(true);
        expect(store.getRun("r1")).toMatchObject({ status: "ok", summary: "done", replyText: "Hello", errorMessage: null, endedAt: 150 });
        expect(store.finishRun("r1", { status: "error", errorMessage: "late", endedAt: 160 })).toBe(false);
        expect(store.getRun("r1")).toMatchObject({ status: "ok", errorMessage: null, endedAt: 150 });
        expect(store.finishRun("missing", { status: "aborted", endedAt: 1 })).toBe(false);
        expect(store.getRun("missing")).toBeUndefined();
      });

      it("failRunningRuns turns every running run into an error and leaves ended runs alone", () => {
        const store = open();
        store.insertRun({ runId: "r1", sessionKey: "k", kind: "chat", inputHash: "h", startedAt: 1 });
        store.insertRun({ runId: "r2", sessionKey: "k", kind: "agent", inputHash: "h", startedAt: 2 });
        store.insertRun({ runId: "r3", sessionKey: "k", kind: "chat", inputHash: "h", startedAt: 3 });
        store.finishRun("r3", { status: "timeout", errorMessage: "slow", endedAt: 4 });
        expect(store.failRunningRuns(10, "gateway restarted")).toBe(2);
        expect(store.getRun("r1")).toMatchObject({ status: "error", errorMessage: "gateway restarted", endedAt: 10 });
        expect(store.getRun("r2")).toMatchObject({ status: "error", errorMessage: "gateway restarted", endedAt: 10 });
        expect(store.getRun("r3")).toMatchObject({ status: "timeout", errorMessage: "slow", endedAt: 4 });
        expect(store.failRunningRuns(20, "again")).toBe(0);
      });

      it("pruneReleasedLeases deletes only released rows before the cut-off that left nothing behind", () => {
        const store = open();
        const rows = [["removed", 10, "removed"], ["gone", 10, "gone"], ["none", 10, "none"], ["kept", 10, "kept"], ["trashed", 10, "trashed"], ["late", 500, "removed"]] as const;
        for (const [leaseId, releasedAt, outcome] of rows) {
          store.recordLease(lease(leaseId));
          store.markLeaseReleased(leaseId, { releasedAt, reason: "idle", outcome });
        }
        store.recordLease(lease("live"));
        store.recordLease(lease("failed"));
        store.markLeaseFailed("failed", "boom", 10);
        expect(store.pruneReleasedLeases(100)).toBe(3);
        expect(["removed", "gone", "none"].map((id) => store.getLease(id))).toEqual([undefined, undefined, undefined]);
        expect(["kept", "trashed", "late", "live", "failed"].map((id) => store.getLease(id)?.leaseId)).toEqual(["kept", "trashed", "late", "live", "failed"]);
      });

      it("pruneRuns deletes ended runs that ended before the cut-off, never running ones", () => {
        const store = open();
        for (const [runId, endedAt] of [["old", 100], ["edge", 200], ["new", 300]] as const) {
          store.insertRun({ runId, sessionKey: "k", kind: "chat", inputHash: "h", startedAt: 1 });
          store.finishRun(runId, { status: "ok", endedAt });
        }
        store.insertRun({ runId: "live", sessionKey: "k", kind: "chat", inputHash: "h", startedAt: 1 });
        expect(store.pruneRuns(200)).toBe(1);
        expect(store.getRun("old")).toBeUndefined();
        expect(store.getRun("edge")).toBeDefined();
        expect(store.pruneRuns(Number.MAX_SAFE_INTEGER)).toBe(2);
        expect(store.getRun("live")?.status).toBe("running");
        // A pruned runId can be used again.
        expect(store.insertRun({ runId: "old", sessionKey: "k", kind: "chat", inputHash: "h", startedAt: 5 })).toBe(true);
      });
    });

    describe("workspace ledger", () => {
      it("recordLease stores an acquiring lease with no identity yet", () => {
        const store = open();
        store.recordLease(lease("l1", { kind: "persistent", mode: "agent", path: null, instanceId: null, createdAt: 5 }));
        expect(store.getLease("l1")).toEqual({
          leaseId: "l1",
          sessionKey: "agent:main:a",
          kind: "persistent",
          mode: "agent",
          path: null,
          state: "acquiring",
          instanceId: null,
          dev: null,
          ino: null,
          createdAt: 5,
          releasedAt: null,
          releaseReason: null,
          outcome: null,
          error: null,
        } satisfies LeaseRecord);
        expect(store.getLease("l2")).toBeUndefined();
        expect(() => store.recordLease(lease("l1"))).toThrow(/UNIQUE/);
      });

      it("walks acquiring → live → releasing → released", () => {
        const store = open();
        store.recordLease(lease("l1"));
        expect(store.markLeaseLive("l1", { path: "/tmp/openclaw-0/real", dev: "2049", ino: "18446744073709551615" })).toBe(true);
        expect(store.getLease("l1")).toMatchObject({ state: "live", path: "/tmp/openclaw-0/real", dev: "2049", ino: "18446744073709551615" });
        expect(store.markLeaseReleasing("l1")).toBe(true);
        expect(store.getLease("l1")?.state).toBe("releasing");
        expect(store.markLeaseReleased("l1", { releasedAt: 50, reason: "session-deleted", outcome: "removed" })).toBe(true);
        expect(store.getLease("l1")).toMatchObject({ state: "released", releasedAt: 50, releaseReason: "session-deleted", outcome: "removed", error: null, path: "/tmp/openclaw-0/real" });
      });

      it("refuses transitions that would move a lease backwards or out of released", () => {
        const store = open();
        store.recordLease(lease("l1"));
        expect(store.markLeaseReleasing("missing")).toBe(false);
        expect(store.markLeaseLive("l1", { path: null, dev: "1", ino: "2" })).toBe(true);
        expect(store.markLeaseLive("l1", { path: "/elsewhere", dev: "3", ino: "4" })).toBe(false);
        expect(store.getLease("l1")).toMatchObject({ state: "live", dev: "1", ino: "2" });
        expect(store.markLeaseReleased("l1", { releasedAt: 9, reason: "idle", outcome: "kept", error: "busy dir" })).toBe(true);
        expect(store.markLeaseReleasing("l1")).toBe(false);
        expect(store.markLeaseFailed("l1", "boom", 10)).toBe(false);
        expect(store.markLeaseReleased("l1", { releasedAt: 11, reason: "again", outcome: "removed" })).toBe(false);
        expect(store.getLease("l1")).toMatchObject({ state: "released", releasedAt: 9, releaseReason: "idle", outcome: "kept", error: "busy dir" });
      });

      it("markLeaseFailed ends a lease with its error and time; a failed lease can still be released by a sweep", () => {
        const store = open();
        store.recordLease(lease("l1"));
        expect(store.markLeaseFailed("l1", "ENOSPC", 20)).toBe(true);
        expect(store.getLease("l1")).toMatchObject({ state: "failed", error: "ENOSPC", releasedAt: 20 });
        expect(store.markLeaseLive("l1", { path: "/p", dev: "1", ino: "1" })).toBe(false);
        expect(store.markLeaseReleasing("l1")).toBe(false);
        expect(store.markLeaseFailed("l1", "again", 21)).toBe(false);
        expect(store.markLeaseReleased("l1", { releasedAt: 30, reason: "sweep", outcome: "removed", error: null })).toBe(true);
        expect(store.getLease("l1")).toMatchObject({ state: "released", releasedAt: 30, error: null, outcome: "removed" });

        store.recordLease(lease("l2"));
        store.markLeaseLive("l2", { path: "/p2", dev: "1", ino: "2" });
        store.markLeaseReleasing("l2");
        expect(store.markLeaseFailed("l2", "EBUSY", 40)).toBe(true);
        expect(store.getLease("l2")?.state).toBe("failed");
      });

      it("listLeases lists newest first and filters by states, session and instance", () => {
        const store = open();
        store.recordLease(lease("a", { sessionKey: "s1", instanceId: "i1", createdAt: 10 }));
        store.recordLease(lease("b", { sessionKey: "s2", instanceId: "i1", createdAt: 30 }));
        store.recordLease(lease("c", { sessionKey: "s1", instanceId: "i2", createdAt: 20 }));
        store.recordLease(lease("d", { sessionKey: "s1", instanceId: null, createdAt: 30 }));
        store.markLeaseLive("a", { path: "/a", dev: "1", ino: "1" });
        store.markLeaseFailed("c", "x", 25);
        store.markLeaseLive("d", { path: "/d", dev: "1", ino: "4" });
        store.markLeaseReleasing("d");

        const ids = (query?: Parameters<Store["listLeases"]>[0]): string[] => store.listLeases(query).map((l) => l.leaseId);
        // Equal createdAt: the later insert is newer.
        expect(ids()).toEqual(["d", "b", "c", "a"]);
        expect(ids({ states: ["live"] })).toEqual(["a"]);
        expect(ids({ states: ["acquiring", "live", "releasing"] })).toEqual(["d", "b", "a"]);
        expect(ids({ states: [] })).toEqual([]);
        expect(ids({ sessionKey: "s1" })).toEqual(["d", "c", "a"]);
        expect(ids({ instanceId: "i1" })).toEqual(["b", "a"]);
        expect(ids({ sessionKey: "s1", instanceId: "i1", states: ["live"] })).toEqual(["a"]);
        expect(ids({ sessionKey: "s1", states: ["released"] })).toEqual([]);
        expect(ids({ limit: 2 })).toEqual(["d", "b"]);
        expect(ids({ limit: 2, offset: 1 })).toEqual(["b", "c"]);
        expect(ids({ offset: 3 })).toEqual(["a"]);
        expect(store.listLeases({ sessionKey: "s2" })[0]).toEqual(store.getLease("b"));
      });

      it("countLeases reports all five states, zero when none", () => {
        const store = open();
        expect(store.countLeases()).toEqual({ acquiring: 0, live: 0, releasing: 0, released: 0, failed: 0 });
        store.recordLease(lease("a"));
        store.recordLease(lease("b"));
        store.recordLease(lease("c"));
        store.recordLease(lease("d"));
        store.markLeaseLive("b", { path: "/b", dev: "1", ino: "2" });
        store.markLeaseFailed("c", "x", 1);
        store.markLeaseReleased("d", { releasedAt: 2, reason: "r", outcome: "o" });
        expect(store.countLeases()).toEqual({ acquiring: 1, live: 1, releasing: 0, released: 1, failed: 1 });
      });
    });

    describe("transaction", () => {
      it("commits and returns fn's value", () => {
        const store = open();
        const value = store.transaction(() => {
          store.insertSession(session("k"));
          store.appendMessage({ sessionKey: "k", role: "user", content: "x", runId: null, idempotencyKey: null, createdAt: 1 });
          return 42;
        });
        expect(value).toBe(42);
        expect(store.getSession("k")).toBeDefined();
        expect(store.listMessages("k").total).toBe(1);
      });

      it("rolls back everything when fn throws, rethrows the same error, and stays usable", () => {
        const store = open();
        const failure = new Error("stop");
        expect(() =>
          store.transaction(() => {
            store.insertSession(session("k"));
            store.appendMessage({ sessionKey: "k", role: "user", content: "x", runId: null, idempotencyKey: null, createdAt: 1 });
            store.insertRun({ runId: "r", sessionKey: "k", kind: "chat", inputHash: "h", startedAt: 1 });
            store.recordLease(lease("l", { sessionKey: "k" }));
            throw failure;
          }),
        ).toThrow(failure);
        expect(store.getSession("k")).toBeUndefined();
        expect(store.listMessages("k").total).toBe(0);
        expect(store.getRun("r")).toBeUndefined();
        expect(store.getLease("l")).toBeUndefined();
        expect(store.countLeases().acquiring).toBe(0);
        expect(store.transaction(() => store.insertSession(session("k")))).toBe(true);
        expect(store.getSession("k")).toBeDefined();
      });

      it("a nested call joins the outer transaction: an outer throw undoes the inner work", () => {
        const store = open();
        expect(() =>
          store.transaction(() => {
            const inner = store.transaction(() => {
              store.insertSession(session("inner"));
              return "inner-done";
            });
            expect(inner).toBe("inner-done");
            throw new Error("outer fails");
          }),
        ).toThrow("outer fails");
        expect(store.getSession("inner")).toBeUndefined();

        store.transaction(() => {
          store.insertSession(session("a"));
          expect(() => store.transaction(() => { throw new Error("inner fails"); })).toThrow("inner fails");
          store.insertSession(session("b"));
        });
        expect(store.listSessions().total).toBe(2);
      });

      it("counts commits: a write outside a transaction is one, a transaction of many writes one, reads none", () => {
        const store = open();
        const start = store.commits;
        store.insertSession(session("k"));
        store.getSession("k");
        expect(store.commits - start).toBe(1);
        store.transaction(() => {
          store.insertRun({ runId: "r", sessionKey: "k", kind: "chat", inputHash: "h", startedAt: 1 });
          store.appendMessage({ sessionKey: "k", role: "user", content: "x", runId: "r", idempotencyKey: null, createdAt: 1 });
          store.transaction(() => store.patchSession("k", { updatedAt: 2 }));
        });
        expect(store.commits - start).toBe(2);
        expect(() => store.transaction(() => store.insertSession(session("k2")) && undefined)).not.toThrow();
        expect(store.commits - start).toBe(3);
      });

      it("onCommit runs at once outside a transaction, after the outermost commit inside one, never after a rollback", () => {
        const store = open();
        const calls: string[] = [];
        store.onCommit(() => calls.push("outside"));
        expect(calls).toEqual(["outside"]);
        store.transaction(() => {
          store.insertSession(session("k"));
          store.transaction(() => store.onCommit(() => calls.push("nested")));
          store.onCommit(() => calls.push("outer"));
          expect(calls).toEqual(["outside"]);
        });
        expect(calls).toEqual(["outside", "nested", "outer"]);
        expect(() =>
          store.transaction(() => {
            store.onCommit(() => calls.push("rolled back"));
            throw new Error("stop");
          }),
        ).toThrow("stop");
        store.transaction(() => store.insertSession(session("k3")));
        expect(calls).toEqual(["outside", "nested", "outer"]);
      });

      it("refuses an async fn and rolls back what it did synchronously", async () => {
        const store = open();
        expect(() =>
          store.transaction(async () => {
            store.insertSession(session("k"));
            await Promise.resolve();
          }),
        ).toThrow(TypeError);
        expect(store.getSession("k")).toBeUndefined();
        await Promise.resolve();
        expect(store.transaction(() => 1)).toBe(1);
      });
    });

    describe("close", () => {
      it("is idempotent, and later calls throw STORE_UNAVAILABLE", () => {
        const store = create();
        store.insertSession(session("k"));
        store.close();
        expect(() => store.close()).not.toThrow();
        expect(() => store.getSession("k")).toThrow(expect.objectContaining({ name: "GatewayError", code: "STORE_UNAVAILABLE" }));
        expect(() => store.transaction(() => 1)).toThrow(GatewayError);
      });
    });
  });
}
