import { readFile, readdir } from "node:fs/promises";
import * as path from "node:path";
import type { DatabaseSync } from "node:sqlite";
import JSON5 from "json5";
import { errnoCode } from "@ocgw/workspace";
import { isRecord } from "../util/guards.ts";
import type { SandboxSession } from "./sandbox-names.ts";
import { hasColumns, withSqliteSnapshot } from "./sqlite-snapshot.ts";

/**
 * OpenClaw's session store, read without changing it: per agent,
 * `<stateDir>/agents/<id>/agent/openclaw-agent.sqlite` (2026.9: table `session_nodes`, one row per
 * session key; `entry_valid = -1` is the tombstone `sessions.delete` leaves), and the
 * `agents/<id>/sessions/sessions.json` of older releases (a live store until `openclaw doctor
 * --fix` imports it). A store it cannot read, or whose format it does not know, makes every
 * sandbox directory that store's sessions could own unprovable.
 */

/** A session that still exists. */
export interface LiveSession extends SandboxSession {
  /** Its last activity (ms since epoch), the newest of the store's timestamps; null when none is recorded. */
  readonly lastActiveAt: number | null;
}

export type AgentStore = { readonly agentId: string; readonly file: string; readonly sessions: readonly LiveSession[] } | { readonly agentId: string; readonly file: string; readonly error: string };

const REQUIRED_COLUMNS = ["session_key", "entry_json", "entry_valid"];
const TIME_COLUMNS = ["updated_at", "last_interaction_at", "last_activity_at"];

function text(value: unknown): string | undefined {
  return typeof value === "string" && value.trim() !== "" ? value : undefined;
}

function num(value: unknown): number | null {
  const n = typeof value === "bigint" ? Number(value) : typeof value === "number" ? value : Number.NaN;
  return Number.isFinite(n) && n > 0 ? n : null;
}

/** The fields of an `entry_json` (or a sessions.json value) that change where its sandbox lives. */
export function sessionFromEntry(agentId: string, key: string, entry: unknown, times: readonly unknown[]): LiveSession {
  const e = isRecord(entry) ? entry : {};
  const actor = isRecord(e["createdActor"]) ? e["createdActor"] : {};
  const stamps = [...times, e["updatedAt"]].map(num).filter((n): n is number => n !== null);
  return {
    key,
    agentId,
    spawnedWorkspaceDir: text(e["spawnedBy"]) === undefined ? undefined : text(e["spawnedWorkspaceDir"]),
    spawnedCwd: text(e["spawnedCwd"]),
    principalId: actor["source"] === "profile" ? text(actor["id"]) : undefined,
    lastActiveAt: stamps.length === 0 ? null : Math.max(...stamps),
  };
}

function readSessionNodes(db: DatabaseSync, agentId: string): LiveSession[] | string {
  if (!hasColumns(db, "session_nodes", REQUIRED_COLUMNS)) return "its session_nodes table is not in the format of OpenClaw 2026.9";
  const times = TIME_COLUMNS.filter((column) => hasColumns(db, "session_nodes", [column]));
  const select = ["session_key", "entry_json", "entry_valid", ...times].join(", ");
  const rows = db.prepare(`SELECT ${select} FROM session_nodes`).all() as Record<string, unknown>[];
  const sessions: LiveSession[] = [];
  for (const row of rows) {
    if (Number(row["entry_valid"]) === -1) continue; // a tombstone: the session was deleted
    const key = row["session_key"];
    if (typeof key !== "string") return "a session_nodes row has no session_key";
    let entry: unknown;
    try {
      entry = JSON.parse(String(row["entry_json"] ?? "{}"));
    } catch {
      entry = {};
    }
    sessions.push(sessionFromEntry(agentId, key, entry, times.map((column) => row[column])));
  }
  return sessions;
}

async function readAgentDatabase(agentId: string, file: string): Promise<AgentStore | undefined> {
  try {
    const result = await withSqliteSnapshot(file, (db) => readSessionNodes(db, agentId));
    if (result === undefined) return undefined;
    return typeof result === "string" ? { agentId, file, error: result } : { agentId, file, sessions: result };
  } catch (error) {
    return { agentId, file, error: `cannot be read (${errnoCode(error) ?? (error instanceof Error ? error.message : String(error))})` };
  }
}

async function readLegacySessionsJson(agentId: string, file: string): Promise<AgentStore | undefined> {
  let raw: string;
  try {
    raw = await readFile(file, "utf8");
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined;
    return { agentId, file, error: `cannot be read (${errnoCode(error) ?? String(error)})` };
  }
  try {
    const document = JSON5.parse(raw) as unknown;
    if (!isRecord(document)) return { agentId, file, error: "does not hold an object of sessions" };
    return { agentId, file, sessions: Object.entries(document).map(([key, entry]) => sessionFromEntry(agentId, key, entry, [])) };
  } catch (error) {
    return { agentId, file, error: `is not valid JSON5 (${error instanceof Error ? error.message : String(error)})` };
  }
}

/** The ids with an `<stateDir>/agents/<id>/` directory (raw names; a link is not followed). */
export async function listAgentDirs(stateDir: string): Promise<string[]> {
  const entries = await readdir(path.join(stateDir, "agents"), { withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
}

/** Every store of every agent that has one (the 2026.9 database and a legacy sessions.json). */
export async function readSessionStores(stateDir: string, agentIds: readonly string[]): Promise<AgentStore[]> {
  const stores: AgentStore[] = [];
  for (const agentId of agentIds) {
    const dir = path.join(stateDir, "agents", agentId);
    for (const store of [await readAgentDatabase(agentId, path.join(dir, "agent", "openclaw-agent.sqlite")), await readLegacySessionsJson(agentId, path.join(dir, "sessions", "sessions.json"))]) {
      if (store !== undefined) stores.push(store);
    }
  }
  return stores;
}
