import { createHash } from "node:crypto";
import { access, readFile, readdir, realpath } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { currentUid, pidExists, readProcStat } from "@ocgw/workspace";
import { isRecord } from "../util/guards.ts";

/**
 * Whether an OpenClaw 2026.9 gateway is running on (writing to) a state dir. Two signals, either
 * one is enough:
 * - its lifecycle lock: `/tmp/openclaw-state-locks-<uid>/gateway-lifecycle.<sha256(real
 *   <stateDir>/state/openclaw.sqlite)[:8]>.lock.sqlite`, on which the gateway holds an exclusive
 *   SQLite transaction for its whole life (probed with a shared read that fails while it is held);
 * - its JSON locks in `<real stateDir>/tmp/openclaw-<uid>/gateway*.lock` (`{ pid, startTime }`),
 *   whose process is alive with the same start time.
 * The files themselves outlive the gateway, so their presence alone proves nothing.
 */
export interface GatewayProbe {
  readonly running: boolean;
  /** What showed it: `lifecycle lock <file> is held`, `gateway lock <file>: pid 123 is alive`. */
  readonly evidence: readonly string[];
}

export interface ProbeOptions {
  /** Where OpenClaw keeps lifecycle locks. Default `/tmp` (its fixed runtime directory on Linux and macOS). */
  readonly runtimeDir?: string | undefined;
  readonly uid?: number | undefined;
}

async function canonical(file: string): Promise<string> {
  return realpath(file).catch(async () => path.join(await realpath(path.dirname(file)).catch(() => path.dirname(file)), path.basename(file)));
}

/** True when another process holds an exclusive transaction on the SQLite file. */
function isSqliteLockHeld(file: string): boolean {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(file, { readOnly: true, timeout: 0 });
    db.exec("BEGIN; SELECT rootpage FROM sqlite_schema LIMIT 1;");
    db.exec("ROLLBACK");
    return false;
  } catch (error) {
    return /busy|locked/i.test(error instanceof Error ? error.message : String(error));
  } finally {
    db?.close();
  }
}

async function lifecycleEvidence(stateDir: string, options: ProbeOptions): Promise<string[]> {
  const uid = options.uid ?? currentUid();
  const dir = path.join(options.runtimeDir ?? (process.platform === "win32" ? path.join(os.homedir(), "AppData", "Local", "OpenClaw", "locks") : "/tmp"), uid === undefined ? "openclaw-state-locks" : `openclaw-state-locks-${uid}`);
  const hash = createHash("sha256").update(await canonical(path.join(stateDir, "state", "openclaw.sqlite"))).digest("hex").slice(0, 8);
  const file = path.join(dir, `gateway-lifecycle.${hash}.lock.sqlite`);
  const present = await access(file).then(
    () => true,
    () => false,
  );
  return present && isSqliteLockHeld(file) ? [`lifecycle lock ${file} is held`] : [];
}

async function jsonLockEvidence(stateDir: string, options: ProbeOptions): Promise<string[]> {
  const uid = options.uid ?? currentUid();
  const dir = path.join(await canonical(stateDir), "tmp", uid === undefined ? "openclaw" : `openclaw-${uid}`);
  const names = await readdir(dir).catch(() => [] as string[]);
  const evidence: string[] = [];
  for (const name of names.filter((entry) => /^gateway.*\.lock$/.test(entry))) {
    const file = path.join(dir, name);
    let lock: unknown;
    try {
      lock = JSON.parse(await readFile(file, "utf8"));
    } catch {
      continue;
    }
    if (!isRecord(lock) || typeof lock["pid"] !== "number" || !pidExists(lock["pid"])) continue;
    const recorded = typeof lock["startTime"] === "number" ? lock["startTime"] : undefined;
    const stat = readProcStat(lock["pid"]);
    if (stat !== null && (stat.state === "Z" || stat.state === "X")) continue;
    if (recorded !== undefined && stat !== null && recorded !== stat.startTicks) continue;
    evidence.push(`gateway lock ${file}: pid ${lock["pid"]} is alive`);
  }
  return evidence;
}

/** Probes both signals; never throws. */
export async function probeOpenClawGateway(stateDir: string, options: ProbeOptions = {}): Promise<GatewayProbe> {
  const evidence = [...(await lifecycleEvidence(stateDir, options).catch(() => [])), ...(await jsonLockEvidence(stateDir, options).catch(() => []))];
  return { running: evidence.length > 0, evidence };
}
