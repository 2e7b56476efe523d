import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { onTestFinished } from "vitest";
import { sandboxDirName, sha32 } from "../../src/legacy/sandbox-names.ts";

/**
 * Synthetic OpenClaw 2026.9.6 state dirs for the unit tests of the legacy reclaim. The tables are
 * the real ones (their DDL as 2026.9.6 creates them, trimmed to the columns that matter); the
 * real-OpenClaw suite (`npm run test:openclaw`) checks the same rules against a real gateway.
 */

/** `session_nodes` of `agents/<id>/agent/openclaw-agent.sqlite`, as in 2026.9.6. */
export const AGENT_DB_SCHEMA = `CREATE TABLE IF NOT EXISTS session_nodes (
  session_key TEXT NOT NULL PRIMARY KEY,
  current_session_id TEXT NOT NULL,
  entry_json TEXT NOT NULL,
  entry_valid INTEGER NOT NULL DEFAULT 0 CHECK (entry_valid IN (-1, 0, 1)),
  updated_at INTEGER NOT NULL,
  last_interaction_at INTEGER,
  last_activity_at INTEGER
) STRICT;`;

/** The workspace tables of `state/openclaw.sqlite`, as in 2026.9.6. */
export const STATE_DB_SCHEMA = `CREATE TABLE IF NOT EXISTS workspace_setup_state (
  workspace_key TEXT NOT NULL PRIMARY KEY, workspace_path TEXT, version INTEGER, bootstrap_seeded_at TEXT,
  setup_completed_at TEXT, updated_at INTEGER, attested_at_ms INTEGER, attestation_updated_at_ms INTEGER) STRICT;
CREATE TABLE IF NOT EXISTS workspace_path_aliases (
  alias_key TEXT NOT NULL PRIMARY KEY, alias_path TEXT NOT NULL, workspace_key TEXT NOT NULL,
  workspace_path TEXT NOT NULL, updated_at_ms INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS workspace_generated_bootstrap_hashes (
  workspace_key TEXT NOT NULL, filename TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (workspace_key, filename)) STRICT;
CREATE TABLE IF NOT EXISTS sandbox_registry_entries (
  registry_kind TEXT NOT NULL, container_name TEXT NOT NULL, session_key TEXT, entry_json TEXT) STRICT;`;

export interface OpenClawFixture {
  /** The temp root (removed after the test). */
  readonly base: string;
  readonly stateDir: string;
  readonly home: string;
  /** An env that points OpenClaw's variables at the fixture and nothing else. */
  readonly env: NodeJS.ProcessEnv;
  /** A lock dir of its own, so the probe never sees a real gateway's. */
  readonly lockDir: string;
}

export async function tempOpenClaw(): Promise<OpenClawFixture> {
  const base = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "ocgw-legacy-")));
  onTestFinished(() => (process.env["OCGW_KEEP_TEST_DIRS"] ? undefined : fs.rm(base, { recursive: true, force: true })));
  const stateDir = path.join(base, "state");
  const home = path.join(base, "home");
  const lockDir = path.join(base, "locks");
  await Promise.all([fs.mkdir(stateDir), fs.mkdir(home), fs.mkdir(lockDir)]);
  return { base, stateDir, home, lockDir, env: { HOME: home, PATH: process.env["PATH"] } };
}

export const sha256 = (text: string | Buffer): string => createHash("sha256").update(text).digest("hex");

export async function writeConfig(fx: OpenClawFixture, text: string, name = "openclaw.json"): Promise<string> {
  const file = path.join(fx.stateDir, name);
  await fs.writeFile(file, text);
  return file;
}

export interface FixtureSession {
  key: string;
  /** 1 (default), 0, or -1 (the tombstone sessions.delete leaves). */
  valid?: -1 | 0 | 1;
  entry?: Record<string, unknown>;
  updatedAt?: number;
}

/** Writes sessions into `agents/<agentId>/agent/openclaw-agent.sqlite` (creating it). */
export async function addSessions(fx: OpenClawFixture, agentId: string, sessions: readonly FixtureSession[]): Promise<void> {
  const dir = path.join(fx.stateDir, "agents", agentId, "agent");
  await fs.mkdir(dir, { recursive: true });
  const db = new DatabaseSync(path.join(dir, "openclaw-agent.sqlite"));
  try {
    db.exec("PRAGMA journal_mode = WAL;");
    db.exec(AGENT_DB_SCHEMA);
    const insert = db.prepare("INSERT OR REPLACE INTO session_nodes (session_key, current_session_id, entry_json, entry_valid, updated_at) VALUES (?, ?, ?, ?, ?)");
    for (const s of sessions) {
      const updatedAt = s.updatedAt ?? Date.now();
      insert.run(s.key, randomBytes(8).toString("hex"), s.valid === -1 ? "{}" : JSON.stringify({ updatedAt, ...s.entry }), s.valid ?? 1, updatedAt);
    }
  } finally {
    db.close();
  }
}

function stateDb(fx: OpenClawFixture): DatabaseSync {
  const db = new DatabaseSync(path.join(fx.stateDir, "state", "openclaw.sqlite"));
  db.exec(STATE_DB_SCHEMA);
  return db;
}

/** Records, as 2026.9.6 does, the hashes of the bootstrap files generated into `workspace`. */
export async function recordGenerated(fx: OpenClawFixture, workspace: string, files: Record<string, string>): Promise<void> {
  await fs.mkdir(path.join(fx.stateDir, "state"), { recursive: true });
  const db = stateDb(fx);
  try {
    const real = await fs.realpath(workspace);
    const key = sha256(real);
    db.prepare("INSERT OR REPLACE INTO workspace_setup_state (workspace_key, workspace_path, version) VALUES (?, ?, 1)").run(key, real);
    for (const [name, text] of Object.entries(files)) db.prepare("INSERT OR REPLACE INTO workspace_generated_bootstrap_hashes VALUES (?, ?, ?)").run(key, name, sha256(text));
  } finally {
    db.close();
  }
}

/** The bootstrap files of the fixtures: any bytes do, since their hashes are recorded or copied. */
export const SEED: Readonly<Record<string, string>> = { "AGENTS.md": "# AGENTS.md\nfixture agents\n", "SOUL.md": "# SOUL.md\n", "IDENTITY.md": "# IDENTITY.md\n", "USER.md": "# USER.md\n" };

/** A directory as OpenClaw seeds it: the bootstrap files, recorded in the state db, and `git init`'s files. */
export async function seedWorkspace(fx: OpenClawFixture, dir: string, options: { git?: boolean; record?: boolean } = {}): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  for (const [name, text] of Object.entries(SEED)) await fs.writeFile(path.join(dir, name), text);
  if (options.git === true) {
    await fs.mkdir(path.join(dir, ".git", "hooks"), { recursive: true });
    await fs.mkdir(path.join(dir, ".git", "refs", "heads"), { recursive: true });
    await fs.mkdir(path.join(dir, ".git", "objects", "info"), { recursive: true });
    await fs.writeFile(path.join(dir, ".git", "HEAD"), "ref: refs/heads/main\n");
    await fs.writeFile(path.join(dir, ".git", "config"), "[core]\n\tbare = false\n");
    await fs.writeFile(path.join(dir, ".git", "description"), "Unnamed repository\n");
    await fs.writeFile(path.join(dir, ".git", "hooks", "pre-commit.sample"), "#!/bin/sh\n");
  }
  if (options.record !== false) await recordGenerated(fx, dir, SEED);
  return dir;
}

/** OpenClaw's name for a session's sandbox workspace (scope session) under an agent workspace. */
export function sandboxNameFor(sessionKey: string, agentWorkspace: string): string {
  return sandboxDirName(`${sessionKey}:workspace:${sha32(agentWorkspace)}`);
}

/** A clock two hours ahead: everything the test made is past the default one-hour minimum age. */
export const LATER = (): number => Date.now() + 2 * 3_600_000;

/**
 * A state dir with sandbox `{ mode: "non-main", scope: "session" }` and four seeded sandbox
 * directories: `agent:main:alive` (a live session), `gone` (no row), `tomb` (the tombstone of
 * sessions.delete) and `old` (a session idle for 40 days).
 */
export async function sandboxState(): Promise<{ fx: OpenClawFixture; agentWs: string; dirs: Record<string, string> }> {
  const fx = await tempOpenClaw();
  await writeConfig(fx, `{ agents: { defaults: { sandbox: { mode: "non-main", scope: "session" } }, entries: { main: {} } } }`);
  const agentWs = path.join(fx.stateDir, "workspace");
  await seedWorkspace(fx, agentWs);
  const dirs: Record<string, string> = {};
  for (const key of ["agent:main:alive", "agent:main:gone", "agent:main:tomb", "agent:main:old"]) {
    dirs[key] = await seedWorkspace(fx, path.join(fx.stateDir, "sandboxes", sandboxNameFor(key, agentWs)));
  }
  await addSessions(fx, "main", [
    { key: "agent:main:alive" },
    { key: "agent:main:tomb", valid: -1 },
    { key: "agent:main:old", updatedAt: Date.now() - 40 * 86_400_000 },
  ]);
  return { fx, agentWs, dirs };
}
