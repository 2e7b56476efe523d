/**
 * The store's transactions and commits: explicit transactions, the group commit that admissions
 * share, callbacks that wait for a commit, and the commit counter.
 *
 * A group (`group(fn)`) is a transaction left open across calls: every `fn` of one macrotask (all
 * `chat.send` frames of one socket read, say) runs in its own SAVEPOINT inside it, so a throwing
 * `fn` undoes only its own writes, and one COMMIT at the end of the macrotask (setImmediate) makes
 * them all durable. Any other use of the store first commits the open group, so every other
 * reader and writer sees exactly what it saw before groups existed, and a write that must be
 * durable before a side effect (a ledger row before its directory) is never held back by one.
 */
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { isThenable } from "../util/guards.ts";

export interface Transactions {
  /** Commits made so far: each write outside a transaction or group, each transaction, each group. */
  readonly commits: number;
  /** Before a read: commits an open group unless called from inside a group's `fn`. */
  beforeRead(): void;
  /** Before a write: as {@link beforeRead}, and counts the write's own commit when it has one. */
  beforeWrite(): void;
  transaction<T>(fn: () => T): T;
  group<T>(fn: () => T): T;
  onCommit(callback: () => void, onAbandon?: (error: unknown) => void): void;
  /** Commits the open group now, if there is one. */
  flush(): void;
}

interface Waiting {
  committed: () => void;
  abandoned?: ((error: unknown) => void) | undefined;
}

export function createTransactions(db: DatabaseSync, log: (line: string) => void = () => undefined): Transactions {
  const stmt = {
    begin: db.prepare("BEGIN IMMEDIATE"),
    commit: db.prepare("COMMIT"),
    rollback: db.prepare("ROLLBACK"),
    savepoint: db.prepare("SAVEPOINT ocgw_group_call"),
    release: db.prepare("RELEASE ocgw_group_call"),
    rollbackTo: db.prepare("ROLLBACK TO ocgw_group_call"),
  } satisfies Record<string, StatementSync>;
  /** Nesting of transaction()/group() bodies running now: inside one, writes join it. */
  let depth = 0;
  let commits = 0;
  let groupOpen = false;
  let waiting: Waiting[] = [];

  function settle(error: unknown): void {
    const list = waiting;
    waiting = [];
    for (const entry of list) {
      if (error === undefined) entry.committed();
      else entry.abandoned?.(error);
    }
  }

  function flush(): void {
    if (!groupOpen) return;
    groupOpen = false;
    if (!db.isOpen) {
      settle(new Error("the database was closed before the group committed"));
      return;
    }
    try {
      stmt.commit.run();
      commits += 1;
    } catch (error) {
      if (db.isTransaction) stmt.rollback.run();
      log(`the store could not commit a group of admissions: ${String(error)}`);
      settle(error);
      return;
    }
    settle(undefined);
  }

  function beforeRead(): void {
    if (groupOpen && depth === 0) flush();
  }

  /** Runs `fn` with the writes it makes undone (and its callbacks dropped) if it throws. */
  function undoable<T>(fn: () => T, rollback: () => void): T {
    const mark = waiting.length;
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
      throw error;
    } finally {
      depth -= 1;
    }
  }

  return {
    get commits() {
      return commits;
    },
    beforeRead,
    beforeWrite() {
      beforeRead();
      if (depth === 0) commits += 1;
    },
    transaction(fn) {
      if (depth > 0) return fn();
      flush();
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
    },
    group(fn) {
      if (depth > 0) return fn();
      if (!groupOpen) {
        stmt.begin.run();
        groupOpen = true;
        setImmediate(flush);
      }
      stmt.savepoint.run();
      const result = undoable(fn, () => {
        stmt.rollbackTo.run();
        stmt.release.run();
      });
      stmt.release.run();
      return result;
    },
    onCommit(callback, onAbandon) {
      if (depth === 0 && !groupOpen) callback();
      else waiting.push({ committed: callback, abandoned: onAbandon });
    },
    flush,
  };
}
