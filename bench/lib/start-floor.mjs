// The start-up floor of the gateway's architecture, for the cold-start section: a Node process
// that does only what every ocgw start must (open a SQLite store in WAL mode, make a token, listen
// with an HTTP server carrying a ws WebSocketServer on loopback) and prints "ready". Plain
// JavaScript, so no TypeScript stripping is timed. Argument: a directory for the database.
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import * as path from "node:path";

const { DatabaseSync } = process.getBuiltinModule("node:sqlite");
const { createServer } = process.getBuiltinModule("node:http");
const { WebSocketServer } = createRequire(import.meta.url)("ws");

const db = new DatabaseSync(path.join(process.argv[2] ?? ".", "floor.sqlite"));
db.exec("PRAGMA journal_mode = WAL");
db.exec("CREATE TABLE IF NOT EXISTS sessions (session_key TEXT PRIMARY KEY, body TEXT)");
randomBytes(32);
const server = createServer();
new WebSocketServer({ server });
server.listen(0, "127.0.0.1", () => process.stdout.write("ready\n"));
