import { type ChildProcess, spawn } from "node:child_process";
import { readFile, readdir } from "node:fs/promises";
import * as path from "node:path";
import { StringDecoder } from "node:string_decoder";
import { GatewayError } from "../errors.ts";
import { abortError, runnerClosedError } from "./abort.ts";
import type { AgentRunner, CommandRunnerOptions, RunInput, RunOutput } from "./types.ts";

export const DEFAULT_KILL_GRACE_MS = 2000;
/** Bytes of stderr kept for the error message of a failed run. */
export const STDERR_TAIL_BYTES = 4096;
/** After SIGKILL, how long to wait for a process group to vanish before giving up on it. */
const KILL_WAIT_MS = 5000;
/** How often groups that outlived their run (background jobs) are checked for being gone. */
const LINGER_POLL_MS = 1000;
const MAX_TIMER_MS = 2_147_483_647;

/** One spawned program: its own process group (pgid = pid), tracked until the whole group is gone. */
interface Group {
  readonly pid: number;
  readonly sessionKey: string;
  readonly child: ChildProcess;
  /** Resolves once the group leader has exited (and been reaped). */
  readonly exited: Promise<void>;
  /** Stops the run this group belongs to with `reason`; unset once that run has settled. */
  stopRun: ((reason: Error) => void) | undefined;
  /** The SIGTERM → grace → SIGKILL sequence, once started. */
  stopping: Promise<void> | undefined;
}

/**
 * Runs an external agent CLI (`claude -p`, `codex exec`, any program) once per turn. The program
 * starts in the session's workspace (or "/" without one) in a process group of its own, with
 * `OCGW_SESSION_KEY`, `OCGW_RUN_ID` and `OCGW_WORKSPACE` set; it gets the message on stdin (then
 * EOF), and its stdout is the reply, streamed as deltas (UTF-8 safe). Exit 0 resolves with all of
 * stdout; a non-zero exit, a death by signal or a program that cannot be started rejects with
 * GatewayError("RUNNER_FAILED") naming the program, the exit code or signal and the last 4 KiB of stderr.
 *
 * Stopping (abort, timeout, `killSession`, `close`) sends SIGTERM to the whole group, SIGKILL after
 * `killGraceMs`, and settles only once no process of the group runs any more (on Linux a zombie
 * waiting to be reaped by its parent counts as gone). Groups that outlive their run (a background
 * job with its own stdout) stay tracked under their session until they are gone, so
 * `killSession` reaches them too.
 */
export function createCommandRunner(options: CommandRunnerOptions): AgentRunner {
  const { argv, env, killGraceMs } = validateCommandOptions(options);
  const [program, ...args] = argv as [string, ...string[]];
  const neutralCwd = path.parse(process.cwd()).root;
  const sessions = new Map<string, Set<Group>>();
  const byPid = new Map<number, Group>();
  let closing: Promise<void> | undefined;
  let lingerTimer: ReturnType<typeof setInterval> | undefined;
  let lingerCheck: Promise<void> | undefined;

  function track(group: Group): void {
    const stale = byPid.get(group.pid);
    // A reused pid means the group that had it is gone.
    if (stale !== undefined) untrack(stale);
    byPid.set(group.pid, group);
    let set = sessions.get(group.sessionKey);
    if (set === undefined) sessions.set(group.sessionKey, (set = new Set()));
    set.add(group);
  }

  function untrack(group: Group): void {
    if (byPid.get(group.pid) === group) byPid.delete(group.pid);
    const set = sessions.get(group.sessionKey);
    set?.delete(group);
    if (set?.size === 0) sessions.delete(group.sessionKey);
    if (byPid.size === 0 && lingerTimer !== undefined) {
      clearInterval(lingerTimer);
      lingerTimer = undefined;
    }
  }

  /** After its run has settled: forget the group once it is gone, polling while it lingers. */
  async function release(group: Group): Promise<void> {
    if (!(await groupAlive(group.pid))) {
      untrack(group);
      return;
    }
    if (byPid.get(group.pid) !== group || lingerTimer !== undefined) return;
    lingerTimer = setInterval(() => {
      lingerCheck ??= checkLingering().finally(() => (lingerCheck = undefined));
    }, LINGER_POLL_MS);
    lingerTimer.unref();
  }

  async function checkLingering(): Promise<void> {
    for (const group of [...byPid.values()]) {
      if (group.stopRun === undefined && group.stopping === undefined && !(await groupAlive(group.pid))) untrack(group);
    }
  }

  function terminate(group: Group): Promise<void> {
    group.stopping ??= (async () => {
      signalGroup(group, "SIGTERM");
      if (!(await waitUntilGone(group.pid, killGraceMs))) {
        signalGroup(group, "SIGKILL");
        await waitUntilGone(group.pid, KILL_WAIT_MS);
      }
      await group.exited;
      untrack(group);
    })();
    return group.stopping;
  }

  /** Stops the run of every given group with `reason` and kills the groups; resolves once they are gone. */
  async function stopAll(groups: Iterable<Group>, reason: () => Error): Promise<void> {
    const pending: Promise<void>[] = [];
    for (const group of [...groups]) {
      group.stopRun?.(reason());
      pending.push(terminate(group));
    }
    await Promise.all(pending);
  }

  function run(input: RunInput): Promise<RunOutput> {
    if (closing !== undefined) return Promise.reject(runnerClosedError("command"));
    if (input.signal.aborted) return Promise.reject(abortError(input.signal));
    const cwd = input.cwd ?? neutralCwd;
    return new Promise<RunOutput>((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = spawn(program, args, {
          cwd,
          detached: true,
          stdio: ["pipe", "pipe", "pipe"],
          env: { ...process.env, ...env, OCGW_SESSION_KEY: input.sessionKey, OCGW_RUN_ID: input.runId, OCGW_WORKSPACE: input.cwd ?? "" },
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
        group = {
          pid,
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
    killSession(sessionKey: string): Promise<void> {
      const groups = sessions.get(sessionKey);
      if (groups === undefined) return Promise.resolve();
      return stopAll(groups, () => new GatewayError("RUNNER_ABORTED", `Session "${sessionKey}" was ended and its processes killed`));
    },
    close(): Promise<void> {
      closing ??= stopAll(byPid.values(), () => runnerClosedError("command")).then(() => {
        if (lingerTimer !== undefined) clearInterval(lingerTimer);
        lingerTimer = undefined;
      });
      return closing;
    },
  };
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

function errnoCode(error: unknown): string | undefined {
  const code = error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
  return typeof code === "string" ? code : undefined;
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
          const stat = await readFile(`/proc/${name}/stat`, "utf8");
          // "pid (comm) state ppid pgrp ..."; comm may itself contain ") ".
          const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
          return Number(fields[2]) === pgid && fields[0] !== "Z" && fields[0] !== "X";
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
