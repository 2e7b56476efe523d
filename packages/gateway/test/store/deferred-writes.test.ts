/**
 * Deferred writes (store.deferred, store/transactions.ts): the ledger transitions a crash may lose
 * without harm ride on the next commit instead of making their own. Durability is observed from a
 * second connection to the same file, which sees only commits; the commit counter counts them.
 */
import { setImmediate as nextMacrotask } from "node:timers/promises";
import { afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
import { openStore } from "../../src/store/index.ts";
import type { Store } from "../../src/store/index.ts";
import { DEFER_MS } from "../../src/store/transactions.ts";
import { lease, session } from "./contract.ts";
import { observedStore } from "./observed-store.ts";

function openPair(): { store: Store; committedState: (leaseId: string) => string | undefined } {
  const { store, observer } = observedStore();
  const query = observer.prepare("SELECT state FROM leases WHERE lease_id = ?");
  const committedState = (leaseId: string) => query.get(leaseId)?.["state"] as string | undefined;
  return { store, committedState };
}

/** A store with a session and a lease `acquiring`, committed. */
function withLease(): ReturnType<typeof openPair> {
  const pair = openPair();
  pair.store.insertSession(session("k"));
  pair.store.recordLease(lease("L", { sessionKey: "k" }));
  return pair;
}

const LIVE = { path: "/tmp/openclaw-test/k-1", dev: "1", ino: "2" };

afterEach(() => {
  vi.useRealTimers();
});

describe("deferred writes", () => {
  it("are seen by this store's reads at once, are not committed by them, and ride on the next transaction: one commit for both", () => {
    const { store, committedState } = withLease();
    const before = store.commits;
    expect(store.deferred(() => store.markLeaseLive("L", LIVE))).toBe(true);
    expect(store.getLease("L")?.state).toBe("live");
    expect(store.countLeases().live).toBe(1);
    expect(committedState("L")).toBe("acquiring");
    expect(store.commits - before).toBe(0);
    store.transaction(() => store.patchSession("k", { updatedAt: 5 }));
    expect(committedState("L")).toBe("live");
    expect(store.commits - before).toBe(1);
  });

  it("ride on a write made outside any transaction, which still commits at once", () => {
    const { store, committedState } = withLease();
    const before = store.commits;
    store.deferred(() => store.markLeaseLive("L", LIVE));
    store.insertSession(session("other"));
    expect(committedState("L")).toBe("live");
    expect(store.commits - before).toBe(1);
  });

  it("ride on the admission group, committed at the end of the macrotask", async () => {
    const { store, committedState } = withLease();
    const before = store.commits;
    store.deferred(() => store.markLeaseLive("L", LIVE));
    store.group(() => store.insertSession(session("admitted")));
    expect(committedState("L")).toBe("acquiring");
    await nextMacrotask();
    expect(committedState("L")).toBe("live");
    expect(store.commits - before).toBe(1);
  });

  it(`are committed on their own ${DEFER_MS} ms after the first of them when nothing else commits`, () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const { store, committedState } = withLease();
    const before = store.commits;
    store.deferred(() => store.markLeaseLive("L", LIVE));
    vi.advanceTimersByTime(DEFER_MS / 2);
    store.deferred(() => store.markLeaseReleasing("L"));
    vi.advanceTimersByTime(DEFER_MS / 2 - 1);
    expect(committedState("L")).toBe("acquiring");
    vi.advanceTimersByTime(1);
    expect(committedState("L")).toBe("releasing");
    expect(store.commits - before).toBe(1);
    // A timer of a batch already committed does nothing to the next one.
    store.deferred(() => store.markLeaseReleased("L", { releasedAt: 9, reason: "run-end", outcome: "removed", error: null }));
    store.transaction(() => undefined);
    store.deferred(() => store.patchSession("k", { updatedAt: 7 }));
    vi.advanceTimersByTime(DEFER_MS - 1);
    expect(store.commits - before).toBe(2);
    vi.advanceTimersByTime(1);
    expect(store.commits - before).toBe(3);
  });

  it("are committed by close(), so a graceful stop loses none", () => {
    const { store } = withLease();
    store.deferred(() => store.markLeaseLive("L", LIVE));
    store.close();
    const reopened = openStore({ path: store.path });
    onTestFinished(() => reopened.close());
    expect(reopened.getLease("L")?.state).toBe("live");
  });

  it("undo only themselves when they throw, and the batch goes on", () => {
    const { store, committedState } = withLease();
    store.deferred(() => store.markLeaseLive("L", LIVE));
    expect(() =>
      store.deferred(() => {
        store.markLeaseReleasing("L");
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(store.getLease("L")?.state).toBe("live");
    store.insertSession(session("other"));
    expect(committedState("L")).toBe("live");
  });

  it("inside a transaction just join it", () => {
    const { store, committedState } = withLease();
    const before = store.commits;
    store.transaction(() => store.deferred(() => store.markLeaseLive("L", LIVE)));
    expect(committedState("L")).toBe("live");
    expect(store.commits - before).toBe(1);
  });
});
