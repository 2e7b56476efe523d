/**
 * Every process of a command run, on Linux, including those that left its process group (`setsid`,
 * a double fork): found in one consistent snapshot of /proc (see {@link scanProcesses}), then killed
 * and awaited. A process counts as the
 * run's when it is of our uid, is neither this process nor one of its ancestors, and
 *
 * - carries the run's token: `OCGW_RUN_TOKEN=<random>` in /proc/<pid>/environ (inherited by every
 *   descendant that did not clear or replace its environment), or
 * - is in the run's process group (pgid = the leader's pid), started no earlier than the leader and
 *   carries no other run's token, or
 * - is a child (ppid) of a process that counts, or
 * - (only for a directory about to be removed, see {@link isSessionLease}) has its working directory
 *   inside it, carries no token of another session's run ({@link SweepTarget.spare}) and started no
 *   earlier than the session's first run there.
 *
 * What still escapes: a process that cleared or replaced its environment, is not (or no longer)
 * in the directory and lost its parent link (re-parented) before the scan; processes of another
 * uid (setuid programs) and non-dumpable ones (their /proc entries are root's); and work handed to
 * a service that is not a descendant at all (systemd-run, at, a container daemon).
 */
import { randomUUID } from "node:crypto";
import { readFile, readdir, readlink, stat } from "node:fs/promises";
import * as path from "node:path";
import { errnoCode, nodeFsPort, parseProcStat, readMarker, readProcStat } from "@ocgw/workspace";

/** The environment variable that carries a run's token to every descendant. */
export const RUN_TOKEN_ENV = "OCGW_RUN_TOKEN";
/** After SIGKILL, how long to wait for the processes to be gone before reporting them as survivors. */
export const KILL_WAIT_MS = 5000;
/** SIGKILL rounds (scan, kill, wait) for processes that keep forking while being killed. */
export const MAX_KILL_ROUNDS = 8;
/** Scans of /proc for one consistent snapshot, at most (see {@link scanProcesses}). */
export const MAX_SCANS = 8;
/** The provider keeps this much of the session key in a lease marker. */
const MARKER_KEY_MAX = 1024;
const ENVIRON_NEEDLE = Buffer.from(`${RUN_TOKEN_ENV}=`);

/** What identifies one run's processes. */
export interface RunMark {
  /** The value of {@link RUN_TOKEN_ENV} the run was started with. */
  readonly token: string;
  /**
   * The run's process group id (its leader's pid); null once the group has been seen dissolved,
   * so that a later process that reuses the number is never taken for it.
   */
  readonly pgid: number | null;
  /** The leader's start time, in clock ticks after boot; null if it could not be read. */
  readonly startTicks: number | null;
}

/** A directory about to be removed, whose processes count as the runs' unless they carry a spared token. */
export interface DoomedDir {
  /** Its real path. */
  readonly dir: string;
  /** Start time (clock ticks after boot) of the session's first run there; older processes are spared. */
  readonly sinceTicks: number | null;
  /**
   * Every process working in it counts, whatever run token it carries: a dead gateway's lease
   * directory (private to ocgw, 0700), whose runs' tokens died with that gateway.
   */
  readonly anyToken?: boolean | undefined;
}

export interface SweepTarget {
  readonly runs: readonly RunMark[];
  readonly dirs: readonly DoomedDir[];
  /**
   * Tokens of runs that are not the target's (another session's, still running or lingering):
   * their processes are spared even inside a doomed directory. A token not listed here, such as
   * that of an earlier run of the same session, does not protect a process in a doomed directory.
   */
  readonly spare?: ReadonlySet<string> | undefined;
}

/** One process of our uid, as one scan saw it. */
export interface ProcessEntry {
  readonly pid: number;
  readonly ppid: number;
  readonly pgrp: number;
  readonly startTicks: number;
  /** The command name (`comm`). */
  readonly name: string;
  readonly cwd: string | null;
  /** Its {@link RUN_TOKEN_ENV} value; null without one (or an unreadable environment). */
  readonly token: string | null;
}

export function newRunToken(): string {
  return randomUUID();
}

/** `pid`'s start time in clock ticks after boot; null where it cannot be read (not Linux, gone). */
export function startTicksOf(pid: number): number | null {
  return readProcStat(pid)?.startTicks ?? null;
}

/** This process and its ancestors: never signalled, whatever they carry. */
function selfAndAncestors(): Set<number> {
  const spared = new Set<number>();
  for (let pid = process.pid; pid > 0 && !spared.has(pid) && spared.size < 256; ) {
    spared.add(pid);
    pid = readProcStat(pid)?.ppid ?? 0;
  }
  return spared;
}

/** The token in a NUL-separated environment block. */
function tokenIn(environ: Buffer): string | null {
  let at = environ.indexOf(ENVIRON_NEEDLE);
  while (at > 0 && environ[at - 1] !== 0) at = environ.indexOf(ENVIRON_NEEDLE, at + 1);
  if (at < 0) return null;
  const start = at + ENVIRON_NEEDLE.length;
  const end = environ.indexOf(0, start);
  return environ.subarray(start, end < 0 ? environ.length : end).toString("latin1");
}

/** What one read of /proc/<pid> found. */
type Read =
  | { readonly kind: "live"; readonly entry: ProcessEntry }
  /** Another uid's, or not a process we can read. */
  | { readonly kind: "other" }
  /** Gone (ENOENT) or a zombie: `key` is `<pid>` or `<pid>:<startTicks>` (a zombie's). */
  | { readonly kind: "dead"; readonly key: string };

const OTHER: Read = { kind: "other" };

async function readEntry(pid: number, uid: number): Promise<Read> {
  try {
    // /proc/<pid> belongs to the process's effective uid (root's when it is not dumpable).
    if ((await stat(`/proc/${pid}`)).uid !== uid) return OTHER;
    const parsed = parseProcStat(await readFile(`/proc/${pid}/stat`, "utf8"));
    if (parsed === null) return OTHER;
    // A zombie is dead, only waiting to be reaped: it counts as gone.
    if (parsed.state === "Z" || parsed.state === "X") return { kind: "dead", key: `${pid}:${parsed.startTicks}` };
    const [cwd, environ] = await Promise.all([readlink(`/proc/${pid}/cwd`).catch(() => null), readFile(`/proc/${pid}/environ`).catch(() => null)]);
    const { ppid, pgrp, startTicks, name } = parsed;
    const entry = { pid, ppid, pgrp, startTicks, name, cwd: cwd?.replace(/ \(deleted\)$/, "") ?? null, token: environ === null ? null : tokenIn(environ) };
    return { kind: "live", entry };
  } catch (error) {
    return errnoCode(error) === "ENOENT" || errnoCode(error) === "ESRCH" ? { kind: "dead", key: String(pid) } : OTHER;
  }
}

/** One listing of /proc and a read of each process in it. */
async function scanOnce(uid: number, spared: ReadonlySet<number>): Promise<{ entries: ProcessEntry[]; dead: Set<string> }> {
  const pids = (await readdir("/proc")).filter((name) => /^\d+$/.test(name)).map(Number);
  const reads = await Promise.all(pids.filter((pid) => !spared.has(pid)).map((pid) => readEntry(pid, uid)));
  const entries: ProcessEntry[] = [];
  const dead = new Set<string>();
  for (const read of reads) {
    if (read.kind === "live") entries.push(read.entry);
    else if (read.kind === "dead") dead.add(read.key);
  }
  return { entries, dead };
}

/**
 * Every live process of our uid except this one and its ancestors, as one consistent snapshot.
 * Rejects if /proc cannot be listed.
 *
 * A scan lists /proc, then reads each process. A process that was listed but had died by the time
 * it was read may have forked a child in between, which the listing missed: a shell that starts a
 * background job and exits at once. Its child would be missed, and a kill that trusted that scan
 * would declare the run dead while its job lives on. So a scan in which a listed process was found
 * dead counts only if the next scan finds no other death (a zombie seen by both was dead before the
 * second listing, so its children are in it); up to {@link MAX_SCANS} scans, then the last one.
 */
export async function scanProcesses(): Promise<ProcessEntry[]> {
  const uid = process.getuid?.();
  if (uid === undefined) throw new Error("no uid: not a POSIX system");
  const spared = selfAndAncestors();
  let settled = new Set<string>();
  for (let scans = 1; ; scans += 1) {
    const { entries, dead } = await scanOnce(uid, spared);
    if (scans === MAX_SCANS || [...dead].every((key) => settled.has(key))) return entries;
    settled = dead;
  }
}

function inside(cwd: string, dir: string): boolean {
  return cwd === dir || cwd.startsWith(dir.endsWith(path.sep) ? dir : `${dir}${path.sep}`);
}

function matchesRun(entry: ProcessEntry, target: SweepTarget, tokens: ReadonlySet<string>): boolean {
  if (entry.token !== null) return tokens.has(entry.token);
  return target.runs.some((run) => run.pgid === entry.pgrp && (run.startTicks === null || entry.startTicks >= run.startTicks));
}

function matchesDir(entry: ProcessEntry, target: SweepTarget): boolean {
  // A process that carries another session's run token belongs to that run, wherever it is.
  if (entry.cwd === null) return false;
  const cwd = entry.cwd;
  const foreignToken = entry.token !== null && target.spare?.has(entry.token) === true;
  return target.dirs.some((doomed) => (doomed.anyToken === true || !foreignToken) && inside(cwd, doomed.dir) && (doomed.sinceTicks === null || entry.startTicks >= doomed.sinceTicks));
}

/** The entries that count as the target's (see the module comment), descendants included. */
export function selectMembers(entries: readonly ProcessEntry[], target: SweepTarget): ProcessEntry[] {
  const tokens = new Set(target.runs.map((run) => run.token));
  const members = new Set(entries.filter((entry) => matchesRun(entry, target, tokens) || matchesDir(entry, target)));
  const children = new Map<number, ProcessEntry[]>();
  for (const entry of entries) {
    const siblings = children.get(entry.ppid);
    if (siblings === undefined) children.set(entry.ppid, [entry]);
    else siblings.push(entry);
  }
  for (const member of members) {
    // Iterating a Set visits what is added during the loop: this walks the whole subtree.
    for (const child of children.get(member.pid) ?? []) if (child.startTicks >= member.startTicks) members.add(child);
  }
  return entries.filter((entry) => members.has(entry));
}

/** True once `entry` is gone: no such pid, a new process under its pid, or a zombie. */
function isGone(entry: ProcessEntry): boolean {
  const now = readProcStat(entry.pid);
  return now === null || now.startTicks !== entry.startTicks || now.state === "Z" || now.state === "X";
}

/** Signals `entry` unless its pid now names another process. */
function signal(entry: ProcessEntry, name: NodeJS.Signals): void {
  if (isGone(entry)) return;
  try {
    process.kill(entry.pid, name);
  } catch {
    // Gone since (ESRCH), or no longer ours (EPERM): nothing to do.
  }
}

/** Polls until every entry is gone; false if some remain after `ms`. */
async function waitGone(entries: readonly ProcessEntry[], ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  let pause = 5;
  for (;;) {
    if (entries.every(isGone)) return true;
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await new Promise((resolve) => setTimeout(resolve, Math.min(pause, left)));
    pause = Math.min(pause * 2, 100);
  }
}

/**
 * Kills every process of `target`: SIGTERM to each as it is found, SIGKILL to whatever is still
 * found once `graceMs` has passed, scanning again after each round until a scan finds nothing (a
 * process may fork while being killed). Resolves with the survivors: empty on success; otherwise
 * what SIGKILL did not end within {@link KILL_WAIT_MS}, or what still appears after
 * {@link MAX_KILL_ROUNDS} SIGKILL rounds. Rejects if /proc cannot be listed.
 */
export async function killMembers(target: SweepTarget, graceMs: number): Promise<ProcessEntry[]> {
  const killAt = Date.now() + graceMs;
  const termed = new Set<string>();
  for (let round = 0, killRounds = 0; ; round += 1) {
    const found = selectMembers(await scanProcesses(), target);
    if (found.length === 0) return [];
    const kill = round > 0 && Date.now() >= killAt;
    if (kill && killRounds === MAX_KILL_ROUNDS) return found;
    if (kill) killRounds += 1;
    for (const entry of found) {
      const key = `${entry.pid}:${entry.startTicks}`;
      if (kill || !termed.has(key)) signal(entry, kill ? "SIGKILL" : "SIGTERM");
      termed.add(key);
    }
    const gone = await waitGone(found, kill ? KILL_WAIT_MS : killAt - Date.now());
    if (kill && !gone) return found.filter((entry) => !isGone(entry));
  }
}

/**
 * Whether `dir` is the session's own ephemeral lease directory, the one its release removes: it
 * holds a valid lease marker for this directory (name, device and inode) and this session key.
 * Shared or kept workspaces (an agent's, a persistent one) never qualify, so processes that only
 * work in them are never killed for their cwd.
 */
export async function isSessionLease(dir: string, sessionKey: string): Promise<boolean> {
  const [read, st] = await Promise.all([readMarker(nodeFsPort, dir), stat(dir, { bigint: true }).catch(() => null)]);
  if (!read.ok || st === null) return false;
  const { marker } = read;
  return marker.name === path.basename(dir) && marker.dev === st.dev.toString() && marker.ino === st.ino.toString() && marker.key === sessionKey.slice(0, MARKER_KEY_MAX);
}
