import * as fs from "node:fs";
import * as path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { describe, expect, it, onTestFinished } from "vitest";
import { GatewayError } from "../../src/errors.ts";
import { LATEST_SCHEMA_VERSION, openStore } from "../../src/store/index.ts";
import { applyMigrations, assertMigrationOrder, migrations, type Migration } from "../../src/store/schema.ts";
import { session } from "./contract.ts";
import { tempDir } from "./temp-dir.ts";

function raw(file: string): DatabaseSync {
  const db = new DatabaseSync(file);
  onTestFinished(() => {
    if (db.isOpen) db.close();
  });
  return db;
}

function tables(db: DatabaseSync): string[] {
  return db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    .all()
    .map((row) => String(row["name"]));
}

function userVersion(db: DatabaseSync): unknown {
  return db.prepare("PRAGMA user_version").get()?.["user_version"];
}

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected a throw");
}

describe("migration list", () => {
  it("runs 1, 2, 3… and LATEST_SCHEMA_VERSION is its last version", () => {
    expect(() => assertMigrationOrder(migrations)).not.toThrow();
    expect(LATEST_SCHEMA_VERSION).toBe(migrations.at(-1)?.version);
  });

  it("rejects a list that starts above 1, has a gap or is out of order", () => {
    expect(() => assertMigrationOrder([{ version: 2, up: "" }])).toThrow(/expected 1/);
    expect(() => assertMigrationOrder([{ version: 1, up: "" }, { version: 3, up: "" }])).toThrow(/expected 2/);
    expect(() => assertMigrationOrder([{ version: 2, up: "" }, { version: 1, up: "" }])).toThrow(/index 0/);
  });
});

describe("openStore migrations", () => {
  it("migrates an existing database at user_version 0 with no tables", () => {
    const file = path.join(tempDir(), "state.db");
    const before = raw(file);
    before.exec("CREATE TABLE scratch (x); DROP TABLE scratch;");
    expect(tables(before)).toEqual([]);
    expect(userVersion(before)).toBe(0);
    before.close();

    const store = openStore({ path: file });
    onTestFinished(() => store.close());
    expect(store.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
    const after = raw(file);
    expect(tables(after)).toEqual(["leases", "messages", "runs", "sessions"]);
    expect(userVersion(after)).toBe(LATEST_SCHEMA_VERSION);
    expect(store.insertSession(session("k"))).toBe(true);
  });

  it("migrates an empty (zero-byte) file", () => {
    const file = path.join(tempDir(), "state.db");
    fs.writeFileSync(file, "");
    const store = openStore({ path: file });
    onTestFinished(() => store.close());
    expect(store.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
    expect(fs.statSync(file).size).toBeGreaterThan(0);
  });

  it("creates the indexes the queries rely on", () => {
    const file = path.join(tempDir(), "state.db");
    openStore({ path: file }).close();
    const db = raw(file);
    const indexColumns = (table: string): string[][] =>
      db
        .prepare(`SELECT name FROM pragma_index_list('${table}')`)
        .all()
        .map((row) => db.prepare("SELECT name FROM pragma_index_info(?) ORDER BY seqno").all(String(row["name"])).map((c) => String(c["name"])));
    expect(indexColumns("sessions")).toContainEqual(["updated_at", "session_key"]);
    expect(indexColumns("messages")).toContainEqual(["session_key", "seq"]);
    expect(db.prepare("SELECT \"unique\" AS u FROM pragma_index_list('messages') WHERE name = 'messages_by_session_seq'").get()?.["u"]).toBe(1);
    expect(indexColumns("leases")).toContainEqual(["state", "created_at"]);
    expect(indexColumns("leases")).toContainEqual(["session_key", "created_at"]);
    expect(indexColumns("runs")).toContainEqual(["ended_at"]);
  });

  it("refuses a database from a newer ocgw with STORE_TOO_NEW and leaves the file unchanged", () => {
    const dir = tempDir();
    const file = path.join(dir, "state.db");
    const future = raw(file);
    future.exec("CREATE TABLE future_things (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO future_things (v) VALUES ('x'); PRAGMA user_version = 99;");
    future.close();
    const bytes = fs.readFileSync(file);

    const error = catchError(() => openStore({ path: file }));
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ code: "STORE_TOO_NEW", details: { found: 99, latest: LATEST_SCHEMA_VERSION } });
    expect((error as Error).message).toMatch(/99/);
    expect(fs.readFileSync(file).equals(bytes)).toBe(true);
    expect(fs.readdirSync(dir)).toEqual(["state.db"]);
  });

  it("throws STORE_UNAVAILABLE with the cause when the path cannot be a file", () => {
    const dir = tempDir();
    const notADir = path.join(dir, "plain-file");
    fs.writeFileSync(notADir, "x");
    const error = catchError(() => openStore({ path: path.join(notADir, "state.db") }));
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ code: "STORE_UNAVAILABLE" });
    expect((error as Error).cause).toBeInstanceOf(Error);
    expect((error as Error).message).toContain(path.join(notADir, "state.db"));
    expect(fs.readFileSync(notADir, "utf8")).toBe("x");
  });

  it("throws STORE_UNAVAILABLE for a file that is not a database, and leaves it alone", () => {
    const file = path.join(tempDir(), "state.db");
    const junk = Buffer.from("this is not an SQLite database, just some text that is long enough to have a header".repeat(20));
    fs.writeFileSync(file, junk);
    const error = catchError(() => openStore({ path: file }));
    expect(error).toMatchObject({ name: "GatewayError", code: "STORE_UNAVAILABLE" });
    expect(fs.readFileSync(file).equals(junk)).toBe(true);
  });

  it("throws STORE_UNAVAILABLE for an empty path", () => {
    expect(catchError(() => openStore({ path: "" }))).toMatchObject({ code: "STORE_UNAVAILABLE" });
  });

  it("rolls a failed migration back completely and reports STORE_UNAVAILABLE", () => {
    const file = path.join(tempDir(), "state.db");
    const foreign = raw(file);
    // A foreign table in the way makes migration 1 fail part-way (after nothing, or after some tables).
    foreign.exec("CREATE TABLE runs (anything TEXT); INSERT INTO runs VALUES ('keep me');");
    foreign.close();

    const error = catchError(() => openStore({ path: file }));
    expect(error).toMatchObject({ code: "STORE_UNAVAILABLE" });
    expect(String((error as Error).cause)).toMatch(/already exists/);

    const after = raw(file);
    expect(userVersion(after)).toBe(0);
    expect(tables(after)).toEqual(["runs"]);
    expect(after.prepare("SELECT anything FROM runs").all().map((row) => row["anything"])).toEqual(["keep me"]);
  });
});

describe("applyMigrations", () => {
  const steps: Migration[] = [
    { version: 1, up: "CREATE TABLE a (x INTEGER);" },
    { version: 2, up: "CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (2);" },
  ];

  it("applies only the pending steps and is a no-op when current", () => {
    const db = raw(":memory:");
    expect(applyMigrations(db, steps.slice(0, 1))).toBe(1);
    expect(tables(db)).toEqual(["a"]);
    expect(applyMigrations(db, steps)).toBe(2);
    expect(tables(db)).toEqual(["a", "b"]);
    expect(db.prepare("SELECT x FROM a").all().map((row) => row["x"])).toEqual([2]);
    expect(applyMigrations(db, steps)).toBe(2);
    expect(db.prepare("SELECT count(*) AS n FROM a").get()?.["n"]).toBe(1);
    expect(userVersion(db)).toBe(2);
  });

  it("applies all pending steps in one transaction: a failing step undoes the earlier ones", () => {
    const db = raw(":memory:");
    applyMigrations(db, steps.slice(0, 1));
    const broken: Migration[] = [...steps, { version: 3, up: "CREATE TABLE c (z); INSERT INTO missing VALUES (1);" }];
    expect(() => applyMigrations(db, broken)).toThrow(/no such table: missing/);
    expect(userVersion(db)).toBe(1);
    expect(tables(db)).toEqual(["a"]);
    expect(db.isTransaction).toBe(false);
  });

  it("throws STORE_TOO_NEW when the database is ahead of the list", () => {
    const db = raw(":memory:");
    db.exec("PRAGMA user_version = 5");
    expect(catchError(() => applyMigrations(db, steps))).toMatchObject({ code: "STORE_TOO_NEW", details: { found: 5, latest: 2 } });
    expect(tables(db)).toEqual([]);
  });
});
