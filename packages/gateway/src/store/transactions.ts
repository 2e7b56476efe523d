/**
 * The store's transactions and commits: explicit transactions, the group commit that admissions
 * share, deferred writes, callbacks that wait for a commit, and the commit counter.
 *
 * At most one transaction is open between calls, of one of two kinds:
 * - a group (`group(fn)`): every `fn` of one macrotask (all `chat.send` frames of one socket read,
 *   say) runs in its own SAVEPOINT inside it, so a throwing `fn` undoes only its own writes, and one
 *   COMMIT at the end of the macrotask (setImmediate) makes them all durable. Any read or write from
 *   outside commits it first, so nobody sees a write a failed COMMIT could still take back.
 * - deferred writes (`deferred(fn)`): writes that may wait for the next commit, at most
 *   {@link DEFER_MS}: the ledger transitions a crash can lose without harm (the collector closes a
 *   dead instance's rows from what is on disk). They ride on whatever commits next: a group, a
 *   transaction, a write. Reads on this connection see them at once; reads do not commit them.
 *
 * An admission's writes may also wait for the group's COMMIT (`later(write)`): they run, each in
 * its own SAVEPOINT, right before it, so the acks of a burst are written before any of its
 * INSERTs. Until then only the caller knows of them (the run manager and the admission keep what
 * they admitted in memory); anything else that uses the store applies and commits them first.
 *
 * A transaction or a write outside a transaction joins the open one (in a SAVEPOINT) and commits
 * everything at once, so a write that must be durable before a side effect (a ledger row before
 * its directory) is never held back, and costs one commit, not two.
 */
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { isThenable } from "../util/guards.ts";

/** The longest a deferred write waits for a commit to ride on before it is committed on its own, in ms. */
export const DEFER_MS = 1000;
/** The longest a group's end-of-macrotask commit runs queued admission writes before it commits them and yields, in ms. */
export const GROUP_SLICE_MS = 2;

export interface Transactions {
  /** Commits made so far: each write outside a transaction, each transaction, each group, each deferred batch. */
  readonly commits: number;
  /** Before a read: commits an open group unless called from inside a transaction's or group's `fn`. */
  beforeRead(): void;
  /** A write: joins the enclosing `fn`, or commits on its own (with whatever is open). */
  write<T>(fn: () => T): T;
  transaction<T>(fn: () => T): T;
  group<T>(fn: () => T): T;
  deferred<T>(fn: () => T): T;
  later(write: () => void, onAbandon: (error: unknown) => void): void;
  onCommit(callback: () => void, onAbandon?: (error: unknown) => void): void;
  /** Commits what is open now (a group, deferred writes), if anything. */
  flush(): void;
}

interface Queued {
  write: () => void;
  onAbandon: (error: unknown) => void;
  /** The group call (or lone `later`) that queued it: a slice never splits one. */
  unit: number;
}

interface Waiting {
  committed: () => void;
  abandoned?: ((error: unknown) => void) | undefined;
}

type OpenKind = "group" | "deferred";

export function createTransactions(db: DatabaseSync, log: (line: string) => void = () => undefined): Transactions {
  const stmt = {
    begin: db.prepare("BEGIN IMMEDIATE"),
    commit: db.prepare("COMMIT"),
    rollback: db.prepare("ROLLBACK"),
    savepoint: db.prepare("SAVEPOINT ocgw_call"),
    release: db.prepare("RELEASE ocgw_call"),
    rollbackTo: db.prepare("ROLLBACK TO ocgw_call"),
  } satisfies Record<string, StatementSync>;
  /** Nesting of transaction()/group()/deferred() bodies running now: inside one, writes join it. */
  let depth = 0;
  let commits = 0;
  /** The transaction left open between calls, if any. */
  let open: OpenKind | undefined;
  /** Bumped by every BEGIN of an open transaction: a scheduled commit of an earlier one is then void. */
  let generation = 0;
  let deferTimer: ReturnType<typeof setTimeout> | undefined;
  let waiting: Waiting[] = [];
  /** Admission writes queued for the open group's COMMIT, in the order they were queued. */
  let queued: Queued[] = [];
  /** Numbers the group calls and lone `later` calls, for {@link Queued.unit}. */
  let unit = 0;

  function settle(error: unknown): void {
    const list = waiting;
    waiting = [];
    for (const entry of list) {
      if (error === undefined) entry.committed();
      else entry.abandoned?.(error);
    }
  }

  /**
   * Runs the queued admission writes, each in its SAVEPOINT (one that throws is undone and
   * abandoned alone), all of them or those that fit before `until` (performance.now()); or, with
   * `error`, abandons them all.
   */
  function applyQueued(error?: unknown, until = Infinity): void {
    let done = 0;
    while (done < queued.length) {
      const entry = queued[done] as Queued;
      // The writes of one admission (its session, its run) are committed together.
      if (done > 0 && entry.unit !== (queued[done - 1] as Queued).unit && performance.now() >= until) break;
      done += 1;
      if (error !== undefined) {
        entry.onAbandon(error);
        continue;
      }
      try {
        inSavepoint(entry.write);
      } catch (thrown) {
        entry.onAbandon(thrown);
      }
    }
    queued = done === queued.length ? [] : queued.slice(done);
  }

  /**
   * The group's own commit, at the end of the macrotask: the queued writes that fit in
   * {@link GROUP_SLICE_MS} are applied and committed (their runs start), and the rest go to a new
   * group committed in the next turn. Reads of sockets get their turn in between, so the acks of a
   * burst that arrives over several reads never wait for more than a slice of its writes.
   */
  function commitSlice(): void {
    if (open !== "group") {
      flush();
      return;
    }
    applyQueued(undefined, performance.now() + GROUP_SLICE_MS);
    const error = commitOpen(false);
    if (queued.length === 0) return;
    if (error === undefined) openAs("group");
    else applyQueued(error);
  }

  /**
   * Commits the open transaction, with every queued write unless `applyAll` is false (a slice);
   * returns the error when the COMMIT failed (everything in it is then rolled back).
   */
  function commitOpen(applyAll = true): unknown {
    if (open === undefined) return undefined;
    const kind = open;
    clearTimeout(deferTimer);
    deferTimer = undefined;
    if (!db.isOpen) {
      open = undefined;
      const error = new Error("the database was closed before the open transaction committed");
      applyQueued(error);
      settle(error);
      return error;
    }
    if (applyAll) applyQueued();
    open = undefined;
    try {
      stmt.commit.run();
      commits += 1;
    } catch (error) {
      if (db.isTransaction) stmt.rollback.run();
      log(`the store could not commit ${kind === "group" ? "a group of admissions" : "deferred ledger writes"}: ${String(error)}`);
      settle(error);
      return error;
    }
    settle(undefined);
    return undefined;
  }

  function flush(): void {
    commitOpen();
  }

  function commitLater(wait: (commit: () => void) => void, commit: () => void = flush): void {
    const mine = generation;
    wait(() => {
      if (generation === mine) commit();
    });
  }

  function openAs(kind: OpenKind): void {
    if (open === undefined) {
      stmt.begin.run();
      generation += 1;
      if (kind === "deferred") {
        commitLater((commit) => {
          deferTimer = setTimeout(commit, DEFER_MS);
          deferTimer.unref();
        });
      }
    }
    if (kind === "group" && open !== "group") commitLater((commit) => setImmediate(commit), commitSlice);
    open = open === "group" ? "group" : kind;
  }

  /** Runs `fn` with the writes it makes undone (and its callbacks dropped) if it throws. */
  function undoable<T>(fn: () => T, rollback: () => void): T {
    const mark = waiting.length;
    const queuedMark = queued.length;
    depth += 1;
    try {
      const result = fn();
      if (isThenable(result)) {
        // The async part would run after the commit, outside the transaction; refuse instead of half-committing.
        result.then(undefined, () => undefined);
        throw new TypeError("store.transaction() and store.group() take a synchronous function; it returned a promise");
      }
      return result;
    } catch (error) {
      rollback();
      waiting.length = mark;
      // What it queued for the group's commit is dropped with it.
      queued.length = Math.min(queued.length, queuedMark);
      throw error;
    } finally {
      depth -= 1;
    }
  }

  /** `fn` in a SAVEPOINT of the open transaction: a throw undoes only what `fn` wrote. */
  function inSavepoint<T>(fn: () => T): T {
    stmt.savepoint.run();
    const result = undoable(fn, () => {
      stmt.rollbackTo.run();
      stmt.release.run();
    });
    stmt.release.run();
    return result;
  }

  /** `fn` joined to the open transaction, which then commits at once; its COMMIT error is thrown. */
  function joinAndCommit<T>(fn: () => T): T {
    const result = inSavepoint(fn);
    const error = commitOpen();
    if (error !== undefined) throw error;
    return result;
  }

  function transaction<T>(fn: () => T): T {
    if (depth > 0) return fn();
    if (open !== undefined) return joinAndCommit(fn);
    const rollback = () => {
      if (db.isTransaction) stmt.rollback.run();
    };
    stmt.begin.run();
    const result = undoable(fn, rollback);
    try {
      stmt.commit.run();
    } catch (error) {
      rollback();
      settle(error);
      throw error;
    }
    commits += 1;
    settle(undefined);
    return result;
  }

  return {
    get commits() {
      return commits;
    },
    beforeRead() {
      if (open === "group" && depth === 0) flush();
    },
    write(fn) {
      if (depth > 0) return fn();
      if (open !== undefined) return joinAndCommit(fn);
      const result = fn();
      commits += 1;
      return result;
    },
    transaction,
    group(fn) {
      if (depth > 0) return fn();
      openAs("group");
      unit += 1;
      return inSavepoint(fn);
    },
    deferred(fn) {
      if (depth > 0) return fn();
      openAs("deferred");
      return inSavepoint(fn);
    },
    later(write, onAbandon) {
      if (depth > 0 && open === undefined) {
        // Inside a plain transaction: its COMMIT is the next one.
        try {
          inSavepoint(write);
        } catch (error) {
          onAbandon(error);
        }
        return;
      }
      openAs("group");
      if (depth === 0) unit += 1;
      queued.push({ write, onAbandon, unit });
    },
    onCommit(callback, onAbandon) {
      if (depth === 0 && open === undefined) callback();
      else waiting.push({ committed: callback, abandoned: onAbandon });
    },
    flush,
  };
}
