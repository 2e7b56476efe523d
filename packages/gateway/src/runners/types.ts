/**
 * The agent-runner seam: a runner turns one user message (plus the session's earlier turns) into a
 * streamed reply, inside the session's workspace directory (or none). {@link createRunner} in
 * `create-runner.ts` is the one place a configured {@link RunnerSpec} becomes an {@link AgentRunner}.
 */

export type RunnerKind = "echo" | "command" | "openai";

/** One earlier turn of the session, oldest first. */
export interface HistoryTurn {
  readonly role: "user" | "assistant";
  readonly text: string;
}

export interface RunInput {
  runId: string;
  sessionKey: string;
  message: string;
  /** Earlier turns, oldest first. */
  history: readonly HistoryTurn[];
  /** The session's workspace; `null` = none (processes then run in the file-system root, "/" on POSIX). */
  cwd: string | null;
  /**
   * Aborted on chat.abort, timeout, session release or shutdown; `signal.reason` says which. The
   * runner stops its work and rejects with the reason if it is an Error (a `TimeoutError` becomes
   * GatewayError("RUNNER_TIMEOUT")), else with GatewayError("RUNNER_ABORTED").
   */
  signal: AbortSignal;
  /** Each new piece of reply text, in order. Never called once the run has been aborted. */
  onDelta(text: string): void;
  /**
   * A random token for the run's processes (the command runner sets it as OCGW_RUN_TOKEN). The
   * gateway records it with the run, so that its next start can stop what a crash left running.
   * Unset: the runner makes one up.
   */
  processToken?: string | undefined;
}

export interface RunOutput {
  /** The full reply: the concatenation of every delta. */
  text: string;
  stopReason: "stop" | "length" | "error";
  usage?: { input?: number; output?: number };
}

export interface AgentRunner {
  readonly kind: RunnerKind;
  run(input: RunInput): Promise<RunOutput>;
  /** Kill every process this runner spawned for the session (whole process groups) and resolve once they are gone. No-op for runners without processes. */
  killSession(sessionKey: string): Promise<void>;
  /** Kill everything still running; idempotent. Later runs reject with GatewayError("RUNNER_ABORTED"). */
  close(): Promise<void>;
}

/** The echo runner has no settings. */
export type EchoRunnerOptions = Record<string, never>;

export interface CommandRunnerOptions {
  /** Program and arguments, e.g. `["claude", "-p"]`. The program is looked up on PATH. */
  argv: readonly string[];
  /** Extra environment on top of the gateway's own. */
  env?: Readonly<Record<string, string>> | undefined;
  /** How long a process group gets between SIGTERM and SIGKILL. Default 2000 ms. */
  killGraceMs?: number | undefined;
}

export interface OpenAIRunnerOptions {
  /** E.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`; a trailing slash is fine. */
  baseUrl: string;
  model: string;
  /** Sent as `Authorization: Bearer <apiKey>` when set. */
  apiKey?: string | undefined;
}

export type RunnerSpec =
  | { kind: "echo" }
  | ({ kind: "command" } & CommandRunnerOptions)
  | ({ kind: "openai" } & OpenAIRunnerOptions);
