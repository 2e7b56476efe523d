/**
 * Every process of a command run, on Linux, including those that left its process group (`setsid`,
 * a double fork): found by one pass over /proc, then killed and awaited. A process counts as the
 * run's when it is of our uid, is neither this process nor one of its ancestors, and
 *
 * - carries the run's token: `OCGW_RUN_TOKEN=<random>` in /proc/<pid>/environ (inherited by every
 *   descendant that did not clear or replace its environment), or
 * - is in the run's process group (pgid = the leader's pid), started no earlier than the leader and
 *   carries no other run's token, or
 * - is a child (ppid) of a process that counts, or
 * - (only for a directory about to be removed, see {@link isSessionLease}) has its working directory
 *   inside it, carries no other run's token and started no earlier than the session's first run there.
 *
 * What still escapes: a process that cleared or replaced its environment, is not (or no longer)
 * in the directory and lost its parent link (re-parented) before the scan; processes of another
 * uid (setuid programs) and non-dumpable ones (their /proc entries are root's); and work handed to
 * a service that is not a descendant at all (systemd-run, at, a container daemon).
 */
import { randomUUID } from "node:crypto";
import { readFile, readdir, readlink, stat } from "node:fs/promises";
import * as path from "node:path";
import { nodeFsPort, parseProcStat, readMarker, readProcStat } from "@ocgw/workspace";

/** The environment variable that carries a run's token to every descendant. */
export const RUN_TOKEN_ENV = "OCGW_RUN_TOKEN";
/** After SIGKILL, how long to wait for the processes to be gone before reporting them as survivors. */
export const KILL_WAIT_MS = 5000;
/** SIGKILL rounds (scan, kill, wait) for processes that keep forking while being killed. */
export const MAX_KILL_ROUNDS = 8;
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

/** A directory about to be removed, whose token-less processes count as the runs'. */
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

async function readEntry(pid: number, uid: number): Promise<ProcessEntry | null> {
  try {
    // /proc/<pid> belongs to the process's effective uid (root's when it is not dumpable).
    if ((await stat(`/proc/${pid}`)).uid !== uid) return null;
    const parsed = parseProcStat(await readFile(`/proc/${pid}/stat`, "utf8"));
    // A zombie is dead, only waiting to be reaped: it counts as gone.
    if (parsed === null || parsed.state === "Z" || parsed.state === "X") return null;
    const [cwd, environ] = await Promise.all([readlink(`/proc/${pid}/cwd`).catch(() => null), readFile(`/proc/${pid}/environ`).catch(() => null)]);
    const { ppid, pgrp, startTicks, name } = parsed;
    return { pid, ppid, pgrp, startTicks, name, cwd: cwd?.replace(/ \(deleted\)$/, "") ?? null, token: environ === null ? null : tokenIn(environ) };
  } catch {
    return null;
  }
}

/** One pass over /proc: every live process of our uid except this one and its ancestors. Rejects if /proc cannot be listed. */
export async function scanProcesses(): Promise<ProcessEntry[]> {
  const uid = process.getuid?.();
  if (uid === undefined) throw new Error("no uid: not a POSIX system");
  const names = await readdir("/proc");
  const spared = selfAndAncestors();
  const pids = names.filter((name) => /^\d+$/.test(name)).map(Number);
  const entries = await Promise.all(pids.filter((pid) => !spared.has(pid)).map((pid) => readEntry(pid, uid)));
  return entries.filter((entry): entry is ProcessEntry => entry !== null);
}

function inside(cwd: string, dir: string): boolean {
  return cwd === dir || cwd.startsWith(dir.endsWith(path.sep) ? dir : `${dir}${path.sep}`);
}

function matchesRun(entry: ProcessEntry, target: SweepTarget, tokens: ReadonlySet<string>): boolean {
  if (entry.token !== null) return tokens.has(entry.token);
  return target.runs.some((run) => run.pgid === entry.pgrp && (run.startTicks === null || entry.startTicks >= run.startTicks));
}

function matchesDir(entry: ProcessEntry, target: SweepTarget, tokens: ReadonlySet<string>): boolean {
  // A process that carries another run's token belongs to that run, wherever it is.
  if (entry.cwd === null) return false;
  const cwd = entry.cwd;
  const foreignToken = entry.token !== null && !tokens.has(entry.token);
  return target.dirs.some((doomed) => (doomed.anyToken === true || !foreignToken) && inside(cwd, doomed.dir) && (doomed.sinceTicks === null || entry.startTicks >= doomed.sinceTicks));
}

/** The entries that count as the target's (see the module comment), descendants included. */
export function selectMembers(entries: readonly ProcessEntry[], target: SweepTarget): ProcessEntry[] {
  const tokens = new Set(target.runs.map((run) => run.token));
  const members = new Set(entries.filter((entry) => matchesRun(entry, target, tokens) || matchesDir(entry, target, tokens)));
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
