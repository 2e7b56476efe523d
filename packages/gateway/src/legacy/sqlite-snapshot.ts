import { copyFile, mkdtemp, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { errnoCode } from "@ocgw/workspace";

/**
 * Reads an OpenClaw SQLite database without changing a byte of it: the database and its WAL are
 * copied into a private temp directory and the copy is opened. Opening the original, even
 * read-only, would let SQLite write to its `-shm` index (read marks) and would miss nothing only
 * if the WAL were checkpointed; the copy has neither problem. The copy is removed afterwards.
 *
 * @returns `undefined` when the database file does not exist.
 * @throws whatever copying or SQLite throws (the caller turns it into a reason to keep).
 */
export async function withSqliteSnapshot<T>(file: string, read: (db: DatabaseSync) => T): Promise<T | undefined> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "ocgw-legacy-db-"));
  try {
    const copy = path.join(dir, "snapshot.sqlite");
    try {
      await copyFile(file, copy);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return undefined;
      throw error;
    }
    await copyFile(`${file}-wal`, `${copy}-wal`).catch((error: unknown) => {
      if (errnoCode(error) !== "ENOENT") throw error;
    });
    const db = new DatabaseSync(copy);
    try {
      return read(db);
    } finally {
      db.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The column names of `table`, empty when the table does not exist. */
export function columnsOf(db: DatabaseSync, table: string): Set<string> {
  const rows = db.prepare(`PRAGMA table_info(${JSON.stringify(table)})`).all() as { name: string }[];
  return new Set(rows.map((row) => row.name));
}

/** Whether `table` has every one of `columns`. */
export function hasColumns(db: DatabaseSync, table: string, columns: readonly string[]): boolean {
  const have = columnsOf(db, table);
  return columns.every((column) => have.has(column));
}
