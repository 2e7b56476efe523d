/**
 * Child processes the bench starts, so every one of them can be killed by its PID in a finally
 * (and on Ctrl-C of the bench itself), plus line-wise reading of their output and RSS sampling.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { median, sleep } from "./stats.ts";

const children = new Set<ChildProcess>();

export interface Spawned {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Settles with the exit code and signal; never rejects. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last lines of stderr (at most 200), for diagnostics. */
  stderrTail(): string[];
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  onStdoutLine?: (line: string, at: number) => void;
  onStderrLine?: (line: string, at: number) => void;
}

function splitLines(stream: NodeJS.ReadableStream | null, onLine: (line: string, at: number) => void): void {
  if (stream === null) return;
  let buffered = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    const at = performance.now();
    buffered += chunk;
    let index = buffered.indexOf("\n");
    while (index !== -1) {
      onLine(buffered.slice(0, index), at);
      buffered = buffered.slice(index + 1);
      index = buffered.indexOf("\n");
    }
    // A runaway line without newline must not grow without bound.
    if (buffered.length > 1_000_000) buffered = buffered.slice(-1000);
  });
}

/** Spawns `node <args>` (the running Node binary), registered for killing. */
export function spawnNode(args: readonly string[], options: SpawnOptions = {}): Spawned {
  const child = spawn(process.execPath, [...args], { env: options.env ?? process.env, cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] });
  if (child.pid === undefined) throw new Error(`could not spawn node ${args.join(" ")}`);
  children.add(child);
  const tail: string[] = [];
  splitLines(child.stdout, (line, at) => options.onStdoutLine?.(line, at));
  splitLines(child.stderr, (line, at) => {
    tail.push(line);
    if (tail.length > 200) tail.shift();
    options.onStderrLine?.(line, at);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
    child.once("error", () => {
      children.delete(child);
      resolve({ code: null, signal: null });
    });
  });
  return { child, pid: child.pid, exited, stderrTail: () => [...tail] };
}

/** Sends `signal` to the child by PID if it still runs. */
export function signalChild(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  try {
    process.kill(child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** SIGKILLs every child still running (by PID). For finally blocks and signal handlers. */
export function killAllChildren(): number {
  let killed = 0;
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      signalChild(child, "SIGKILL");
      killed += 1;
    }
  }
  return killed;
}

export interface Rss {
  /** VmRSS in KiB. */
  readonly rssKb: number;
  /** VmHWM (peak RSS) in KiB. */
  readonly peakKb: number;
}

/** Reads VmRSS and VmHWM of a process from /proc/<pid>/status. */
export async function readRss(pid: number): Promise<Rss> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { rssKb: field("VmRSS"), peakKb: field("VmHWM") };
}

/** Median VmRSS (KiB) of `samples` readings `gapMs` apart. */
export async function sampleRss(pid: number, samples = 5, gapMs = 200): Promise<number> {
  const values: number[] = [];
  for (let i = 0; i < samples; i++) {
    values.push((await readRss(pid)).rssKb);
    if (i < samples - 1) await sleep(gapMs);
  }
  return median(values);
}

let interruptedBy: NodeJS.Signals | undefined;

/** The signal that interrupted the bench, if one did (results are then not written). */
export function interrupted(): NodeJS.Signals | undefined {
  return interruptedBy;
}

/**
 * On SIGINT/SIGTERM of the bench itself: kill the children by PID, run `cleanup` (remove the bench
 * root), exit 130/143. Returns a function that removes the handlers.
 */
export function onInterrupt(cleanup: () => Promise<void>): () => void {
  const handler = (signal: NodeJS.Signals): void => {
    interruptedBy = signal;
    killAllChildren();
    console.error(`\n${signal}: children killed, removing the bench root`);
    cleanup().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", handler);
  process.once("SIGTERM", handler);
  return () => {
    process.off("SIGINT", handler);
    process.off("SIGTERM", handler);
  };
}
