import { createHash } from "node:crypto";
import * as path from "node:path";
import type { DatabaseSync } from "node:sqlite";
import { errnoCode } from "@ocgw/workspace";
import { isRecord } from "../util/guards.ts";
import { sandboxDirName } from "./sandbox-names.ts";
import type { HashIndex } from "./seeded.ts";
import { hasColumns, withSqliteSnapshot } from "./sqlite-snapshot.ts";

/**
 * What OpenClaw 2026.9's state database (`<stateDir>/state/openclaw.sqlite`) says about
 * workspaces: the sha256 of each bootstrap file it generated, per workspace
 * (`workspace_generated_bootstrap_hashes`, keyed by `workspace_key`, found from a path through
 * `workspace_setup_state` and `workspace_path_aliases`), and the sandbox registry's workspaces
 * (`sandbox_registry_entries`: a container still registered protects its directory).
 */
export interface OpenClawStateDb {
  /** The bootstrap hashes OpenClaw recorded for the workspace at `dir` (empty when none). */
  recordedFor(dir: string, realDir?: string): HashIndex;
  /** Workspace directories and sandbox directory names the sandbox registry still lists. */
  readonly registryDirs: ReadonlySet<string>;
  readonly registryNames: ReadonlySet<string>;
  /**
   * Every workspace path OpenClaw recorded, as it spelled it (`workspace_path_aliases.alias_path`
   * keeps the unresolved spelling of a path reached through a link): sandbox names are hashed from
   * the spelling, so each one is hashed too.
   */
  readonly workspacePaths: ReadonlySet<string>;
  /** Why the database could not be read, when it exists and could not. */
  readonly problem: string | undefined;
}

interface StateRows {
  keysByPath: Map<string, string>;
  workspacePaths: Set<string>;
  hashes: Map<string, Map<string, Set<string>>>;
  registryDirs: Set<string>;
  registryNames: Set<string>;
}

function all(db: DatabaseSync, table: string, columns: readonly string[]): Record<string, unknown>[] {
  if (!hasColumns(db, table, columns)) return [];
  return db.prepare(`SELECT ${columns.join(", ")} FROM ${table}`).all() as Record<string, unknown>[];
}

function readRows(db: DatabaseSync): StateRows {
  const keysByPath = new Map<string, string>();
  for (const row of all(db, "workspace_setup_state", ["workspace_key", "workspace_path"])) keysByPath.set(String(row["workspace_path"]), String(row["workspace_key"]));
  for (const row of all(db, "workspace_path_aliases", ["alias_path", "workspace_key", "workspace_path"])) {
    keysByPath.set(String(row["alias_path"]), String(row["workspace_key"]));
    keysByPath.set(String(row["workspace_path"]), String(row["workspace_key"]));
  }
  const hashes = new Map<string, Map<string, Set<string>>>();
  for (const row of all(db, "workspace_generated_bootstrap_hashes", ["workspace_key", "filename", "sha256"])) {
    const byFile = hashes.get(String(row["workspace_key"])) ?? new Map<string, Set<string>>();
    byFile.set(String(row["filename"]), (byFile.get(String(row["filename"])) ?? new Set()).add(String(row["sha256"]).toLowerCase()));
    hashes.set(String(row["workspace_key"]), byFile);
  }
  const registryDirs = new Set<string>();
  const registryNames = new Set<string>();
  for (const row of all(db, "sandbox_registry_entries", ["session_key", "entry_json"])) {
    if (typeof row["session_key"] === "string") registryNames.add(sandboxDirName(row["session_key"]));
    try {
      const entry = JSON.parse(String(row["entry_json"])) as unknown;
      if (isRecord(entry) && typeof entry["workspaceDir"] === "string") registryDirs.add(path.resolve(entry["workspaceDir"]));
    } catch {
      // An unreadable registry entry protects nothing more; the session store is the proof.
    }
  }
  return { keysByPath, workspacePaths: new Set(keysByPath.keys()), hashes, registryDirs, registryNames };
}

/** Reads `<stateDir>/state/openclaw.sqlite` (from a snapshot); a missing database records nothing. */
export async function readStateDb(stateDir: string): Promise<OpenClawStateDb> {
  let rows: StateRows | undefined;
  let problem: string | undefined;
  try {
    rows = await withSqliteSnapshot(path.join(stateDir, "state", "openclaw.sqlite"), readRows);
  } catch (error) {
    problem = `${path.join(stateDir, "state", "openclaw.sqlite")} cannot be read (${errnoCode(error) ?? (error instanceof Error ? error.message : String(error))}): no generated-file hashes are used`;
  }
  const empty: HashIndex = new Map();
  return {
    recordedFor(dir: string, realDir: string = dir): HashIndex {
      if (rows === undefined) return empty;
      const key = rows.keysByPath.get(dir) ?? rows.keysByPath.get(realDir) ?? createHash("sha256").update(realDir).digest("hex");
      return rows.hashes.get(key) ?? empty;
    },
    registryDirs: rows?.registryDirs ?? new Set(),
    registryNames: rows?.registryNames ?? new Set(),
    workspacePaths: rows?.workspacePaths ?? new Set(),
    problem,
  };
}
