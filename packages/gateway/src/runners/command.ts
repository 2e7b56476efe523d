import { type ChildProcess, spawn } from "node:child_process";
import { realpathSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import * as path from "node:path";
import { StringDecoder } from "node:string_decoder";
import { GatewayError } from "../errors.ts";
import { abortError, runnerClosedError } from "./abort.ts";
import { type DoomedDir, KILL_WAIT_MS, RUN_TOKEN_ENV, type RunMark, type SweepTarget, isSessionLease, killMembers, newRunToken, scanProcesses, selectMembers, startTicksOf } from "./descendants.ts";
import type { AgentRunner, CommandRunnerOptions, RunInput, RunOutput } from "./types.ts";
import { errnoCode, parseProcStat } from "@ocgw/workspace";
import { MAX_TIMER_MS } from "../config/schema.ts";

export const DEFAULT_KILL_GRACE_MS = 2000;
/** Bytes of stderr kept for the error message of a failed run. */
export const STDERR_TAIL_BYTES = 4096;
/** Linux: every descendant of a run is found through /proc, including those that left its group. */
const TRACKS_DESCENDANTS = process.platform === "linux";
/** How often groups that outlived their run (background jobs) are checked for being gone. */
const LINGER_POLL_MS = 1000;

/**
 * One spawned program: its own process group (pgid = pid), tracked until the whole group is gone
 * (Linux: until no process of the run is left, see descendants.ts).
 */
interface Group {
  readonly pid: number;
  /** Its {@link RUN_TOKEN_ENV} value, process group and leader's start time (Linux). */
  mark: RunMark;
  readonly sessionKey: string;
  readonly child: ChildProcess;
  /** Resolves once the group leader has exited (and been reaped). */
  readonly exited: Promise<void>;
  /** Stops the run this group belongs to with `reason`; unset once that run has settled. */
  stopRun: ((reason: Error) => void) | undefined;
  /** The SIGTERM → grace → SIGKILL sequence, once started; unset again once it has ended. */
  stopping: Promise<void> | undefined;
}

/**
 * Runs an external agent CLI (`claude -p`, `codex exec`, any program) once per turn. The program
 * starts in the session's workspace (or "/" without one) in a process group of its own, with the
 * gateway's environment less `OCGW_GATEWAY_TOKEN`, and `OCGW_SESSION_KEY`, `OCGW_RUN_ID`,
 * `OCGW_WORKSPACE` and `OCGW_RUN_TOKEN` (random, one per run) set; it gets the message on stdin (then EOF), and its stdout is the reply, streamed as deltas
 * (UTF-8 safe). Exit 0 resolves with all of
 * stdout; a non-zero exit, a death by signal or a program that cannot be started rejects with
 * GatewayError("RUNNER_FAILED") naming the program, the exit code or signal and the last 4 KiB of stderr.
 *
 * Stopping (abort, timeout, `killSession`, `close`) sends SIGTERM to the whole group, SIGKILL after
 * `killGraceMs`, and settles only once no process of the group runs any more (on Linux a zombie
 * waiting to be reaped by its parent counts as gone). Groups that outlive their run (a background
 * job with its own stdout) stay tracked under their session until they are gone, so
 * `killSession` reaches them too.
 *
 * On Linux "the group" is every process of the run, including those that left it (`setsid`, a
 * double fork): those carrying the run's token, their children, and, for `killSession` and
 * `close`, processes working in the session's own ephemeral lease directory that carry no token of
 * another session's run (see
 * descendants.ts for the exact rule and what still escapes). `killSession` and `close` reject with
 * RUNNER_FAILED naming any process that survived SIGKILL. Elsewhere (or without a readable /proc)
 * only the process group is killed: a process that left it escapes.
 */
export function createCommandRunner(options: CommandRunnerOptions): AgentRunner {
  const { argv, env, killGraceMs } = validateCommandOptions(options);
  const [program, ...args] = argv as [string, ...string[]];
  const neutralCwd = path.parse(process.cwd()).root;
  const sessions = new Map<string, Set<Group>>();
  const groups = new Set<Group>();
  /** Linux: per session, the real path of each workspace its runs used, and when its first run there started. */
  const workspaces = new Map<string, Map<string, number | null>>();
  let closing: Promise<void> | undefined;
  let lingerTimer: ReturnType<typeof setInterval> | undefined;
  let lingerCheck: Promise<void> | undefined;

  function track(group: Group): void {
    groups.add(group);
    let set = sessions.get(group.sessionKey);
    if (set === undefined) sessions.set(group.sessionKey, (set = new Set()));
    set.add(group);
  }

  function untrack(group: Group): void {
    groups.delete(group);
    const set = sessions.get(group.sessionKey);
    set?.delete(group);
    if (set?.size === 0) sessions.delete(group.sessionKey);
    if (groups.size === 0 && lingerTimer !== undefined) {
      clearInterval(lingerTimer);
      lingerTimer = undefined;
    }
  }

  /** After its run has settled: forget the group once it is gone, polling while it lingers. */
  async function release(group: Group): Promise<void> {
    if (!groups.has(group)) return;
    if (!(await aliveGroups([group])).has(group)) {
      untrack(group);
      return;
    }
    if (!groups.has(group) || lingerTimer !== undefined) return;
    lingerTimer = setInterval(() => {
      lingerCheck ??= checkLingering().finally(() => (lingerCheck = undefined));
    }, LINGER_POLL_MS);
    lingerTimer.unref();
  }

  async function checkLingering(): Promise<void> {
    const idle = [...groups].filter((group) => group.stopRun === undefined && group.stopping === undefined);
    const alive = await aliveGroups(idle);
    for (const group of idle) if (!alive.has(group) && group.stopping === undefined) untrack(group);
  }

  /**
   * Kills the processes of `targets` (and those in `dirs` that carry no `spare` token); each group's `stopping`
   * settles once that is done and its leader has exited. Resolves with what survived SIGKILL.
   */
  function sweep(targets: readonly Group[], dirs: readonly DoomedDir[], spare?: ReadonlySet<string>): Promise<string[]> {
    const survivors = killGroups({ runs: targets.map((group) => group.mark), dirs, spare }, targets, killGraceMs);
    for (const group of targets) {
      group.stopping ??= survivors.then(async (left) => {
        group.stopping = undefined;
        if (left.length === 0) {
          await group.exited;
          untrack(group);
        } else {
          // Survivors (the leader may be one) keep their group tracked and polled: a later killSession tries again.
          void release(group);
        }
      });
    }
    return survivors;
  }

  function terminate(group: Group): Promise<void> {
    if (group.stopping === undefined) void sweep([group], []);
    return group.stopping ?? Promise.resolve();
  }

  /** Stops the run of every given group with `reason` and kills their processes; rejects naming any that survived. */
  async function stopAll(targets: Iterable<Group>, reason: () => Error, dirs: readonly DoomedDir[], whose: string, spare?: ReadonlySet<string>): Promise<void> {
    const list = [...targets];
    if (list.length === 0 && dirs.length === 0) return;
    const survivors = sweep(list, dirs, spare);
    for (const group of list) group.stopRun?.(reason());
    const left = await survivors;
    await Promise.all(list.map((group) => group.stopping));
    if (left.length > 0) {
      throw new GatewayError("RUNNER_FAILED", `${left.length} process(es) of ${whose} still ran after SIGKILL: ${left.join(", ")}`, { details: { survivors: left } });
    }
  }

  /** Records a run's workspace (Linux), so that killSession can find processes left in it. */
  function noteWorkspace(sessionKey: string, cwd: string, mark: RunMark): void {
    if (!TRACKS_DESCENDANTS) return;
    let real: string;
    try {
      real = realpathSync(cwd);
    } catch {
      return;
    }
    let dirs = workspaces.get(sessionKey);
    if (dirs === undefined) workspaces.set(sessionKey, (dirs = new Map()));
    if (!dirs.has(real)) dirs.set(real, mark.startTicks);
  }

  /** Takes the workspaces noted for these sessions; keeps those that are the session's own lease directory, which its release removes. */
  async function doomedDirs(sessionKeys: Iterable<string>): Promise<DoomedDir[]> {
    const found: DoomedDir[] = [];
    for (const sessionKey of [...sessionKeys]) {
      const dirs = workspaces.get(sessionKey);
      workspaces.delete(sessionKey);
      for (const [dir, sinceTicks] of dirs ?? []) if (await isSessionLease(dir, sessionKey)) found.push({ dir, sinceTicks });
    }
    return found;
  }

  function run(input: RunInput): Promise<RunOutput> {
    if (closing !== undefined) return Promise.reject(runnerClosedError("command"));
    if (input.signal.aborted) return Promise.reject(abortError(input.signal));
    const cwd = input.cwd ?? neutralCwd;
    const token = input.processToken ?? newRunToken();
    return new Promise<RunOutput>((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = spawn(program, args, {
          cwd,
          detached: true,
          stdio: ["pipe", "pipe", "pipe"],
          env: { ...inheritedEnv(), ...env, OCGW_SESSION_KEY: input.sessionKey, OCGW_RUN_ID: input.runId, OCGW_WORKSPACE: input.cwd ?? "", [RUN_TOKEN_ENV]: token },
        });
      } catch (error) {
        reject(startFailed(program, cwd, error));
        return;
      }
      const pid = child.pid;
      const decoder = new StringDecoder("utf8");
      let text = "";
      let stderrTail: Buffer = Buffer.alloc(0);
      let settled = false;
      let stopped = false;
      let group: Group | undefined;

      const settle = (finish: () => void): void => {
        if (settled) return;
        settled = true;
        input.signal.removeEventListener("abort", onAbort);
        if (group !== undefined) {
          group.stopRun = undefined;
          if (group.stopping === undefined) void release(group);
        }
        finish();
      };

      const stop = (reason: Error): void => {
        if (settled || stopped) return;
        stopped = true;
        if (group === undefined) {
          settle(() => reject(reason));
          return;
        }
        void terminate(group).then(() => {
          child.stdin?.destroy();
          child.stdout?.destroy();
          child.stderr?.destroy();
          settle(() => reject(reason));
        });
      };

      const onAbort = (): void => stop(abortError(input.signal));

      const emit = (delta: string): void => {
        if (delta === "" || stopped) return;
        text += delta;
        try {
          input.onDelta(delta);
        } catch (error) {
          stop(error instanceof Error ? error : new GatewayError("RUNNER_FAILED", `onDelta threw ${String(error)}`));
        }
      };

      if (pid !== undefined) {
        // Read at once: the leader cannot have been reaped (and its pid reused) before the event loop runs.
        const mark: RunMark = { token, pgid: pid, startTicks: TRACKS_DESCENDANTS ? startTicksOf(pid) : null };
        if (input.cwd !== null) noteWorkspace(input.sessionKey, input.cwd, mark);
        group = {
          pid,
          mark,
          sessionKey: input.sessionKey,
          child,
          exited: new Promise<void>((done) => {
            if (child.exitCode !== null || child.signalCode !== null) done();
            else child.once("exit", () => done());
          }),
          stopRun: stop,
          stopping: undefined,
        };
        track(group);
      }

      child.on("error", (error) => {
        // Once the program has started, 'error' only reports a failed kill(); 'close' still follows.
        if (child.pid === undefined) settle(() => reject(startFailed(program, cwd, error)));
      });
      child.stdin?.on("error", () => {
        // EPIPE: the program exited (or closed stdin) without reading all of the message.
      });
      child.stdout?.on("data", (chunk: Buffer) => emit(decoder.write(chunk)));
      child.stderr?.on("data", (chunk: Buffer) => {
        const joined = stderrTail.length === 0 ? chunk : Buffer.concat([stderrTail, chunk]);
        stderrTail = joined.length > STDERR_TAIL_BYTES ? Buffer.from(joined.subarray(joined.length - STDERR_TAIL_BYTES)) : joined;
      });
      child.on("close", (code: number | null, signal: NodeJS.Signals | null) => {
        if (stopped || child.pid === undefined) return;
        emit(decoder.end());
        if (stopped) return;
        if (code === 0) {
          settle(() => resolve({ text, stopReason: "stop" }));
          return;
        }
        const how = code !== null ? `exited with code ${code}` : `was killed by ${signal ?? "a signal"}`;
        const stderr = decodeTail(stderrTail);
        const detail = `"${program}" ${how}${stderr === "" ? " and wrote nothing to stderr" : `; stderr: ${stderr}`}`;
        settle(() => reject(new GatewayError("RUNNER_FAILED", detail, { details: { program, exitCode: code, signal, stderr } })));
      });

      input.signal.addEventListener("abort", onAbort, { once: true });
      if (pid !== undefined) child.stdin?.end(input.message);
    });
  }

  return {
    kind: "command",
    run,
    async killSession(sessionKey: string): Promise<void> {
      const targets = [...(sessions.get(sessionKey) ?? [])];
      const dirs = await doomedDirs([sessionKey]);
      const reason = (): Error => new GatewayError("RUNNER_ABORTED", `Session "${sessionKey}" was ended and its processes killed`);
      // Other sessions' runs keep what they started, even in this session's directory; this session's earlier runs do not.
      const spare = new Set([...groups].filter((group) => group.sessionKey !== sessionKey).map((group) => group.mark.token));
      await stopAll(targets, reason, dirs, `session "${sessionKey}"`, spare);
    },
    close(): Promise<void> {
      closing ??= (async () => {
        const targets = [...groups];
        await stopAll(targets, () => runnerClosedError("command"), await doomedDirs(workspaces.keys()), "the command runner");
      })().finally(() => {
        if (lingerTimer !== undefined) clearInterval(lingerTimer);
        lingerTimer = undefined;
      });
      return closing;
    },
  };
}

/** Variables of the gateway's environment a run never inherits (runner.command.env may still set them). */
export const WITHHELD_ENV = ["OCGW_GATEWAY_TOKEN"] as const;

/** The gateway's environment without {@link WITHHELD_ENV}: an agent gets no credential to its own gateway by default. */
function inheritedEnv(): NodeJS.ProcessEnv {
  const withheld = new Set<string>(WITHHELD_ENV);
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !withheld.has(name)));
}

/** RUNNER_CONFIG unless `options` holds a usable argv, env and killGraceMs. Exported for `createRunner`. */
export function validateCommandOptions(options: CommandRunnerOptions): { argv: string[]; env: Record<string, string>; killGraceMs: number } {
  const raw = options as unknown as Record<string, unknown> | null | undefined;
  const argv = raw?.["argv"];
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((part) => typeof part === "string") || argv[0] === "") {
    throw new GatewayError("RUNNER_CONFIG", "The command runner needs argv: a non-empty list of strings whose first item names the program");
  }
  const env = raw?.["env"];
  if (env !== undefined && (env === null || typeof env !== "object" || Array.isArray(env) || !Object.values(env).every((value) => typeof value === "string"))) {
    throw new GatewayError("RUNNER_CONFIG", "The command runner's env must map names to string values");
  }
  const grace = raw?.["killGraceMs"];
  if (grace !== undefined && (typeof grace !== "number" || !Number.isFinite(grace) || grace < 0 || grace > MAX_TIMER_MS)) {
    throw new GatewayError("RUNNER_CONFIG", `The command runner's killGraceMs must be a number of milliseconds from 0 to ${MAX_TIMER_MS}`);
  }
  return { argv: [...(argv as string[])], env: { ...(env as Record<string, string> | undefined) }, killGraceMs: grace ?? DEFAULT_KILL_GRACE_MS };
}

function startFailed(program: string, cwd: string, error: unknown): GatewayError {
  const why = error instanceof Error ? error.message : String(error);
  return new GatewayError("RUNNER_FAILED", `Could not start "${program}" in ${cwd}: ${why}`, { cause: error, details: { program } });
}

/** The stderr tail as text, without a UTF-8 sequence cut at its start. */
function decodeTail(tail: Buffer): string {
  let start = 0;
  while (start < tail.length && ((tail[start] ?? 0) & 0xc0) === 0x80) start += 1;
  return tail.subarray(start).toString("utf8").trim();
}

/**
 * Kills the processes of `targets` and resolves with a description of each that survived SIGKILL.
 * Linux: every process of `target` (the runs of `targets`, and those in its doomed directories), see descendants.ts.
 * Elsewhere: each process group, SIGTERM, then SIGKILL after `graceMs`.
 */
async function killGroups(target: SweepTarget, targets: readonly Group[], graceMs: number): Promise<string[]> {
  if (TRACKS_DESCENDANTS) {
    try {
      const left = await killMembers(target, graceMs);
      return left.map((entry) => `pid ${entry.pid} (${entry.name})`);
    } catch {
      // No readable /proc: fall back to the process groups.
    }
  }
  const left = await Promise.all(
    targets.map(async (group) => {
      signalGroup(group, "SIGTERM");
      if (await waitUntilGone(group.pid, graceMs)) return [];
      signalGroup(group, "SIGKILL");
      return (await waitUntilGone(group.pid, KILL_WAIT_MS)) ? [] : [`process group ${group.pid}`];
    }),
  );
  return left.flat();
}

/**
 * The groups of `candidates` that still have a process running (Linux: one scan of /proc for all).
 * A group whose leader has exited and whose process group is seen empty forgets its group id.
 */
async function aliveGroups(candidates: readonly Group[]): Promise<Set<Group>> {
  if (candidates.length === 0) return new Set();
  const entries = TRACKS_DESCENDANTS ? await scanProcesses().catch(() => null) : null;
  if (entries === null) {
    const alive = await Promise.all(candidates.map((group) => groupAlive(group.pid)));
    return new Set(candidates.filter((_, index) => alive[index]));
  }
  for (const group of candidates) {
    const exited = group.child.exitCode !== null || group.child.signalCode !== null;
    if (exited && !entries.some((entry) => entry.pgrp === group.pid)) group.mark = { ...group.mark, pgid: null };
  }
  return new Set(candidates.filter((group) => selectMembers(entries, { runs: [group.mark], dirs: [] }).length > 0));
}

function signalGroup(group: Group, signal: NodeJS.Signals): void {
  try {
    process.kill(-group.pid, signal);
  } catch (error) {
    const code = errnoCode(error);
    // ESRCH: already gone. Elsewhere (no process groups, e.g. Windows), signal the leader itself.
    if (code !== "ESRCH" && code !== "EPERM") group.child.kill(signal);
  }
}

/**
 * Whether any process of the group `pgid` still runs. On Linux, members that are zombies (dead,
 * waiting to be reaped by a parent that is not us, e.g. a lazy PID 1) do not count.
 */
export async function groupAlive(pgid: number): Promise<boolean> {
  try {
    process.kill(-pgid, 0);
  } catch (error) {
    return errnoCode(error) === "EPERM";
  }
  if (process.platform !== "linux") return true;
  let names: string[];
  try {
    names = await readdir("/proc");
  } catch {
    return true;
  }
  const states = await Promise.all(
    names
      .filter((name) => /^\d+$/.test(name))
      .map(async (name) => {
        try {
          const stat = parseProcStat(await readFile(`/proc/${name}/stat`, "utf8"));
          return stat !== null && stat.pgrp === pgid && stat.state !== "Z" && stat.state !== "X";
        } catch {
          return false;
        }
      }),
  );
  return states.includes(true);
}

/** Polls until the group is gone; false if it is still there after `ms`. */
async function waitUntilGone(pgid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  let pause = 5;
  for (;;) {
    if (!(await groupAlive(pgid))) return true;
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await new Promise((resolve) => setTimeout(resolve, Math.min(pause, left)));
    pause = Math.min(pause * 2, 100);
  }
}
