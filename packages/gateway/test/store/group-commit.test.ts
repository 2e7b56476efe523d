/**
 * The admission group (store.group, store/transactions.ts): the admissions of one macrotask share
 * one COMMIT at its end; any other use of the store commits them first; a throwing admission
 * undoes only itself; onCommit callbacks wait for the COMMIT and, if it fails, onAbandon runs.
 * Durability is observed from a second connection to the same file, which sees only commits.
 */
import { DatabaseSync } from "node:sqlite";
import { setImmediate as nextMacrotask } from "node:timers/promises";
import { describe, expect, it, onTestFinished } from "vitest";
import { openStore } from "../../src/store/index.ts";
import type { Store } from "../../src/store/index.ts";
import { GROUP_SLICE_MS, createTransactions } from "../../src/store/transactions.ts";
import { session } from "./contract.ts";
import { observedStore } from "./observed-store.ts";

function openPair(): { store: Store; committedKeys: () => string[] } {
  const { store, observer } = observedStore();
  const committedKeys = () => observer.prepare("SELECT session_key FROM sessions ORDER BY session_key").all().map((row) => String(row["session_key"]));
  return { store, committedKeys };
}

describe("the admission group", () => {
  it("commits the admissions of one macrotask once, at its end, with their onCommit callbacks", async () => {
    const { store, committedKeys } = openPair();
    const before = store.commits;
    const started: string[] = [];
    for (const key of ["a", "b", "c"]) {
      store.group(() => {
        store.insertSession(session(key));
        store.onCommit(() => started.push(key));
      });
    }
    expect(committedKeys()).toEqual([]);
    expect(started).toEqual([]);
    await nextMacrotask();
    expect(committedKeys()).toEqual(["a", "b", "c"]);
    expect(started).toEqual(["a", "b", "c"]);
    expect(store.commits - before).toBe(1);
  });

  it("is committed before any use of the store from outside it (a read, a write, a transaction)", () => {
    const { store, committedKeys } = openPair();
    store.group(() => store.insertSession(session("a")));
    expect(store.getSession("a")).toBeDefined();
    expect(committedKeys()).toEqual(["a"]);
    store.group(() => store.insertSession(session("b")));
    store.transaction(() => store.insertSession(session("c")));
    expect(committedKeys()).toEqual(["a", "b", "c"]);
    store.group(() => store.insertSession(session("d")));
    store.close();
    expect(openStore({ path: store.path }).getSession("d")).toBeDefined();
  });

  it("undoes only the admission that throws, and drops its callbacks", async () => {
    const { store, committedKeys } = openPair();
    const started: string[] = [];
    store.group(() => {
      store.insertSession(session("kept"));
      store.onCommit(() => started.push("kept"));
    });
    expect(() =>
      store.group(() => {
        store.insertSession(session("undone"));
        store.onCommit(() => started.push("undone"));
        throw new Error("queue full");
      }),
    ).toThrow("queue full");
    await nextMacrotask();
    expect(committedKeys()).toEqual(["kept"]);
    expect(started).toEqual(["kept"]);
  });

  it("runs onAbandon, not the callback, when the COMMIT fails, and the store goes on", async () => {
    const db = new DatabaseSync(":memory:");
    onTestFinished(() => db.close());
    db.exec("PRAGMA foreign_keys = ON; CREATE TABLE p (id TEXT PRIMARY KEY); CREATE TABLE c (id TEXT, p TEXT REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)");
    const logged: string[] = [];
    const tx = createTransactions(db, (line) => logged.push(line));
    const outcome: string[] = [];
    tx.group(() => {
      // A deferred foreign key: accepted now, refused by the COMMIT.
      db.prepare("INSERT INTO c VALUES ('x', 'missing')").run();
      tx.onCommit(
        () => outcome.push("committed"),
        (error) => outcome.push(`abandoned: ${(error as Error).message}`),
      );
    });
    await nextMacrotask();
    expect(outcome).toEqual(["abandoned: FOREIGN KEY constraint failed"]);
    expect(logged).toEqual([expect.stringContaining("could not commit a group of admissions")]);
    expect(db.isTransaction).toBe(false);
    expect(db.prepare("SELECT count(*) AS n FROM c").get()?.["n"]).toBe(0);
    tx.transaction(() => db.prepare("INSERT INTO p VALUES ('ok')").run());
    expect(db.prepare("SELECT count(*) AS n FROM p").get()?.["n"]).toBe(1);
  });
});

describe("writes queued for the group's commit (store.later)", () => {
  it("run right before the COMMIT, in order, each undone alone when it throws; a read from outside applies them first", async () => {
    const { store, committedKeys } = openPair();
    const events: string[] = [];
    store.group(() => store.later(() => (events.push("write a"), store.insertSession(session("a"))), () => events.push("abandon a")));
    store.later(
      () => {
        events.push("write bad");
        store.insertSession(session("bad"));
        throw new Error("no");
      },
      (error) => events.push(`abandon bad: ${(error as Error).message}`),
    );
    store.later(() => (events.push("write b"), store.insertSession(session("b"))), () => events.push("abandon b"));
    expect(events).toEqual([]);
    await nextMacrotask();
    expect(events).toEqual(["write a", "write bad", "abandon bad: no", "write b"]);
    expect(committedKeys()).toEqual(["a", "b"]);

    store.later(() => void store.insertSession(session("c")), () => undefined);
    expect(store.getSession("c")).toBeDefined();
    expect(committedKeys()).toEqual(["a", "b", "c"]);
  });

  it(`are applied and committed ${GROUP_SLICE_MS} ms at a time by the group's own commit, the rest in later turns (other I/O gets its turn between)`, async () => {
    const { store, committedKeys } = openPair();
    const keys = Array.from({ length: 10 }, (_, i) => `k${i}`);
    const spin = (ms: number) => {
      const end = performance.now() + ms;
      while (performance.now() < end);
    };
    for (const key of keys) store.later(() => (spin(GROUP_SLICE_MS / 2 + 0.5), store.insertSession(session(key))), () => undefined);
    const before = store.commits;
    await nextMacrotask();
    const first = committedKeys().length;
    expect(first).toBeGreaterThanOrEqual(1);
    expect(first).toBeLessThan(keys.length);
    for (let turn = 0; turn < 20 && committedKeys().length < keys.length; turn += 1) await nextMacrotask();
    expect(committedKeys()).toEqual(keys);
    expect(store.commits - before).toBeGreaterThan(1);
  });

  it("regression: a slice never splits the writes one group call queued (an admission's session and its run commit together)", async () => {
    const { store, committedKeys } = openPair();
    const spin = (ms: number) => {
      const end = performance.now() + ms;
      while (performance.now() < end);
    };
    store.group(() => {
      store.later(() => (spin(GROUP_SLICE_MS + 1), store.insertSession(session("first"))), () => undefined);
      store.later(() => void store.insertSession(session("second")), () => undefined);
    });
    await nextMacrotask();
    expect(committedKeys()).toEqual(["first", "second"]);
  });

  it("regression: a group call that throws drops what it queued", async () => {
    const { store, committedKeys } = openPair();
    const abandoned: string[] = [];
    expect(() =>
      store.group(() => {
        store.later(() => void store.insertSession(session("undone")), () => abandoned.push("undone"));
        throw new Error("refused");
      }),
    ).toThrow("refused");
    store.group(() => store.later(() => void store.insertSession(session("kept")), () => abandoned.push("kept")));
    await nextMacrotask();
    expect(committedKeys()).toEqual(["kept"]);
    expect(abandoned).toEqual([]);
  });

  it("are abandoned when the store closes under them without a database to write to", () => {
    const db = new DatabaseSync(":memory:");
    const tx = createTransactions(db);
    const events: string[] = [];
    tx.later(() => events.push("written"), (error) => events.push(`abandoned: ${(error as Error).message}`));
    db.close();
    tx.flush();
    expect(events).toEqual(["abandoned: the database was closed before the open transaction committed"]);
  });
});
