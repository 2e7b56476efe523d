import { constants as fsConstants, existsSync } from "node:fs";
import { access, lstat, stat, statfs } from "node:fs/promises";
import * as path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { currentUid, defaultEphemeralRoot, sweep } from "@ocgw/workspace";
import { type ResolvedConfig, loadConfig } from "../config/index.ts";
import { LATEST_SCHEMA_VERSION, readUserVersion } from "../store/schema.ts";
import { STORE_FILE, type OfflineOptions, retryWhileBusy } from "./common.ts";

export type CheckStatus = "ok" | "warn" | "fail";

/** One line of `ocgw doctor`. */
export interface DoctorCheck {
  readonly status: CheckStatus;
  /** `config`, `state-dir`, `ephemeral-root`, `free-space`, `store`, `orphans`. */
  readonly check: string;
  /** What was found, and for warn/fail what to do. */
  readonly detail: string;
}

/** The result of {@link runDoctor}. */
export interface DoctorReport {
  /** True when no check failed (warnings allowed). */
  readonly ok: boolean;
  readonly checks: DoctorCheck[];
}

/** Free space below this on the ephemeral root's file system is a warning. */
export const LOW_FREE_SPACE_BYTES = 100 * 1024 * 1024; // 100 MiB

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function code(error: unknown): string | undefined {
  const value = (error as { code?: unknown } | undefined)?.code;
  return typeof value === "string" ? value : undefined;
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/** The nearest existing ancestor of `target` (itself when it exists). */
async function nearestExisting(target: string): Promise<string> {
  let current = path.resolve(target);
  for (;;) {
    try {
      await lstat(current);
      return current;
    } catch {
      const parent = path.dirname(current);
      if (parent === current) return current;
      current = parent;
    }
  }
}

async function checkStateDir(stateDir: string): Promise<DoctorCheck> {
  let st;
  try {
    st = await lstat(stateDir);
  } catch (error) {
    if (code(error) !== "ENOENT") return { status: "fail", check: "state-dir", detail: `${stateDir}: cannot inspect (${code(error) ?? describe(error)})` };
    const parent = await nearestExisting(stateDir);
    const writable = await access(parent, fsConstants.W_OK).then(
      () => true,
      () => false,
    );
    return writable
      ? { status: "warn", check: "state-dir", detail: `${stateDir} does not exist yet; the gateway creates it on start` }
      : { status: "fail", check: "state-dir", detail: `${stateDir} does not exist and ${parent} is not writable; create it or pass --state-dir` };
  }
  if (st.isSymbolicLink()) {
    // A linked state dir is a common, deliberate setup: check what it points at.
    try {
      st = await stat(stateDir);
    } catch (error) {
      return { status: "fail", check: "state-dir", detail: `${stateDir} is a dangling symlink (${code(error) ?? describe(error)})` };
    }
  }
  if (!st.isDirectory()) return { status: "fail", check: "state-dir", detail: `${stateDir} is not a directory; point --state-dir (or OCGW_STATE_DIR) at a directory` };
  try {
    await access(stateDir, fsConstants.W_OK | fsConstants.X_OK);
  } catch {
    return { status: "fail", check: "state-dir", detail: `${stateDir} is not writable by this user; fix its permissions or pass another --state-dir` };
  }
  return { status: "ok", check: "state-dir", detail: `${stateDir} exists and is writable` };
}

/** The ephemeral root: a real directory of this user, mode 0700. Returns the check and whether the root may be swept. */
async function checkRoot(root: string): Promise<{ check: DoctorCheck; sweepable: boolean }> {
  let st;
  try {
    st = await lstat(root);
  } catch (error) {
    if (code(error) !== "ENOENT") return { check: { status: "fail", check: "ephemeral-root", detail: `${root}: cannot inspect (${code(error) ?? describe(error)})` }, sweepable: false };
    const parent = await nearestExisting(root);
    const writable = await access(parent, fsConstants.W_OK).then(
      () => true,
      () => false,
    );
    return {
      check: writable
        ? { status: "ok", check: "ephemeral-root", detail: `${root} does not exist yet; the gateway creates it (mode 0700) on start` }
        : { status: "fail", check: "ephemeral-root", detail: `${root} does not exist and ${parent} is not writable; set workspace.ephemeral.root to a writable place` },
      sweepable: false,
    };
  }
  if (st.isSymbolicLink()) {
    return { check: { status: "fail", check: "ephemeral-root", detail: `${root} is a symlink; the gateway refuses it. Remove the link or set workspace.ephemeral.root to a real directory` }, sweepable: false };
  }
  if (!st.isDirectory()) return { check: { status: "fail", check: "ephemeral-root", detail: `${root} is not a directory; remove it or set workspace.ephemeral.root elsewhere` }, sweepable: false };
  const uid = currentUid();
  if (uid !== undefined && st.uid !== uid) {
    return { check: { status: "fail", check: "ephemeral-root", detail: `${root} is owned by uid ${st.uid}, not by this user (uid ${uid}); set workspace.ephemeral.root elsewhere` }, sweepable: false };
  }
  const mode = (st.mode & 0o777).toString(8).padStart(4, "0");
  if (uid !== undefined && (st.mode & 0o077) !== 0) {
    return { check: { status: "warn", check: "ephemeral-root", detail: `${root} has mode ${mode}; the gateway tightens it to 0700 on start (or run chmod 700 "${root}")` }, sweepable: false };
  }
  return { check: { status: "ok", check: "ephemeral-root", detail: `${root} is a directory of this user, mode ${mode}` }, sweepable: true };
}

async function checkFreeSpace(root: string): Promise<DoctorCheck> {
  const where = await nearestExisting(root);
  try {
    const fsStats = await statfs(where);
    const free = Number(fsStats.bavail) * Number(fsStats.bsize);
    if (free < LOW_FREE_SPACE_BYTES) {
      return { status: "warn", check: "free-space", detail: `${mib(free)} free on the file system of ${where} (under ${mib(LOW_FREE_SPACE_BYTES)}); new workspaces may fail: free space or move workspace.ephemeral.root` };
    }
    return { status: "ok", check: "free-space", detail: `${mib(free)} free on the file system of ${where}` };
  } catch (error) {
    return { status: "warn", check: "free-space", detail: `cannot measure free space at ${where} (${code(error) ?? describe(error)})` };
  }
}

/** The store opened read-only: it never migrates or writes, so the doctor leaves it as it was. */
function checkStore(storePath: string): DoctorCheck {
  if (!existsSync(storePath)) return { status: "ok", check: "store", detail: `${storePath} does not exist yet; the gateway creates it on start` };
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(storePath, { readOnly: true });
  } catch (error) {
    return { status: "fail", check: "store", detail: `${storePath} cannot be opened (${describe(error)}); check its permissions` };
  }
  try {
    const version = readUserVersion(db);
    const row = db.prepare("PRAGMA quick_check(1)").get();
    const integrity = row === undefined ? "unknown" : String(Object.values(row)[0]);
    if (integrity !== "ok") return { status: "fail", check: "store", detail: `${storePath} fails its integrity check (${integrity}); restore it from a backup or move it aside` };
    if (version > LATEST_SCHEMA_VERSION) return { status: "fail", check: "store", detail: `${storePath} has schema version ${version}, newer than this ocgw (${LATEST_SCHEMA_VERSION}); run the newer ocgw` };
    if (version < LATEST_SCHEMA_VERSION) return { status: "warn", check: "store", detail: `${storePath} has schema version ${version}; the gateway migrates it to ${LATEST_SCHEMA_VERSION} on start` };
    return { status: "ok", check: "store", detail: `${storePath} opens, schema version ${version}` };
  } catch (error) {
    return { status: "fail", check: "store", detail: `${storePath} is not a readable ocgw database (${describe(error)})` };
  } finally {
    db.close();
  }
}

async function checkOrphans(root: string, staleMs: number): Promise<DoctorCheck> {
  try {
    const result = await retryWhileBusy(() => sweep({ root, dryRun: true, staleMs }));
    const reasons = [...new Set(result.entries.filter((entry) => entry.action === "report").map((entry) => entry.reason))];
    const detail = `${result.reclaimed} reclaimable, ${result.reported} reported (not provably ours${reasons.length > 0 ? `: ${reasons.join("; ")}` : ""}), ${result.kept} live`;
    if (result.reclaimed > 0) return { status: "warn", check: "orphans", detail: `${detail}; run ocgw workspaces gc to reclaim them` };
    if (result.reported > 0) return { status: "warn", check: "orphans", detail: `${detail}; inspect the reported entries by hand (ocgw workspaces ls --orphans)` };
    return { status: "ok", check: "orphans", detail };
  } catch (error) {
    return { status: "fail", check: "orphans", detail: `cannot sweep ${root} (${describe(error)})` };
  }
}

/**
 * Health checks of a local installation, one per line: the configuration loads; the state dir
 * exists and is writable; the ephemeral root is a real directory of this user with mode 0700;
 * free space on its file system (warning under 100 MiB); the store opens (read-only) at a known
 * schema version; orphans (a dry-run sweep: reclaimable and reported). Changes nothing on disk.
 */
export async function runDoctor(options: OfflineOptions = {}): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  let config: ResolvedConfig;
  try {
    config = await loadConfig({ env: options.env, cwd: options.cwd, flags: { stateDir: options.stateDir, configPath: options.configPath } });
    checks.push({ status: "ok", check: "config", detail: config.configPath === null ? "no config file; defaults (and OCGW_* variables) apply" : `${config.configPath} loads` });
  } catch (error) {
    checks.push({ status: "fail", check: "config", detail: describe(error) });
    return report(checks);
  }
  checks.push(await checkStateDir(config.stateDir));
  let root: string;
  try {
    root = path.resolve(config.workspace.ephemeral.root ?? defaultEphemeralRoot());
  } catch (error) {
    checks.push({ status: "fail", check: "ephemeral-root", detail: describe(error) });
    return report(checks);
  }
  const rootCheck = await checkRoot(root);
  checks.push(rootCheck.check);
  checks.push(await checkFreeSpace(root));
  checks.push(checkStore(path.join(config.stateDir, STORE_FILE)));
  if (rootCheck.sweepable) checks.push(await checkOrphans(root, config.workspace.ephemeral.staleMs));
  else if (rootCheck.check.status === "ok") checks.push({ status: "ok", check: "orphans", detail: "none (the ephemeral root does not exist yet)" });
  else checks.push({ status: rootCheck.check.status, check: "orphans", detail: "not counted: the ephemeral root did not pass its check" });
  return report(checks);
}

/** One line per check (multi-line messages, like a config's issue list, are joined). */
function report(checks: readonly DoctorCheck[]): DoctorReport {
  return { ok: checks.every((check) => check.status !== "fail"), checks: checks.map((check) => ({ ...check, detail: check.detail.replace(/\s*\n\s*/g, " ") })) };
}
