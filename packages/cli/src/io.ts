/** What `run` reads and writes, injectable so tests capture output in-process. */

/** A text sink: `process.stdout`, `process.stderr`, or a test's collector. */
export interface Writer {
  write(chunk: string): unknown;
  /** A terminal: progress bars are drawn only then. */
  readonly isTTY?: boolean | undefined;
}

export interface RunIO {
  stdout: Writer;
  stderr: Writer;
  /** Environment for config loading and defaults (OCGW_*). Default `process.env`. */
  env: NodeJS.ProcessEnv;
  /** Base of relative paths. Default `process.cwd()`. */
  cwd: string;
  /** `gateway run` stops (gracefully) when this aborts, as on SIGINT. */
  signal?: AbortSignal | undefined;
  /** Hard exit for a second SIGINT/SIGTERM during shutdown. Default `process.exit`. */
  exit(code: number): void;
}

/** Exit codes of `ocgw` (docs/cli.md). */
export const EXIT = {
  ok: 0,
  /** A failed operation, an unhealthy check, an RPC error. */
  failed: 1,
  /** Unknown command or flag, bad flag value, bad --params JSON. */
  usage: 2,
  /** Connection refused, timed out, or the handshake failed. */
  unreachable: 3,
} as const;

/** A command-line mistake: printed as `ocgw: <message>`, exit 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** What every command gets: the IO and a way to set the exit code. */
export interface CommandContext {
  readonly io: RunIO;
  setExitCode(code: number): void;
}
