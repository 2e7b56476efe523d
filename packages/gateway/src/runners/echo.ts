import { MAX_TIMER_MS } from "../config/schema.ts";
import { GatewayError } from "../errors.ts";
import { abortError, abortableDelay, runnerClosedError } from "./abort.ts";
import type { AgentRunner, EchoRunnerOptions, RunInput, RunOutput } from "./types.ts";

/** Largest delay a directive accepts (setTimeout's limit). */
export const ECHO_MAX_DELAY_MS = MAX_TIMER_MS;
/** Most ticks `/echo:stream` sends. */
export const ECHO_MAX_TICKS = 10_000;
/** Longest reply `/echo:bytes` produces: 64 MiB. */
export const ECHO_MAX_BYTES = 64 * 1024 * 1024;
/** `/echo:bytes`'s text: one 64-byte line repeated (ASCII, so characters = UTF-8 bytes). */
export const ECHO_BYTES_LINE = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do\n";

const DIRECTIVE = /^\/echo:(error|sleep|stream|bytes)(?=\s|$)/;
const ERROR_DIRECTIVE = /^\/echo:error(?:\s+([\s\S]*))?$/;
const SLEEP_DIRECTIVE = /^\/echo:sleep\s+(\d+)(?:\s+([\s\S]*))?$/;
const STREAM_DIRECTIVE = /^\/echo:stream\s+(\d+)\s+(\d+)\s*$/;
const BYTES_DIRECTIVE = /^\/echo:bytes\s+(\d+)\s+(\d+)\s*$/;
/** Word-sized pieces: each run of whitespace stays with the word after it; trailing whitespace is its own piece. */
const WORDS = /\s*\S+|\s+$/g;

/**
 * The default runner: offline and deterministic. It replies `Echo: <message>`, streamed as
 * word-sized deltas (`"Echo:"`, `" hello"`, `" world"`) delivered synchronously, with no timer on
 * that path (every delta has arrived by the time `run` returns its promise).
 *
 * For trying clients and for tests, a message that starts with a directive behaves differently:
 * - `/echo:error <text>` rejects with GatewayError("RUNNER_FAILED", "<text>") after streaming nothing;
 * - `/echo:sleep <ms> <text>` waits `<ms>` milliseconds, then replies `Echo: <text>` as above;
 * - `/echo:stream <n> <ms>` sends `n` deltas `"tick 1 "`, `"tick 2 "`, … `"tick n "`, the first at
 *   once and each next one `<ms>` later (n ≤ 10,000); the reply is their concatenation;
 * - `/echo:bytes <n> <chunk>` replies exactly `n` bytes of ASCII text ({@link ECHO_BYTES_LINE}
 *   repeated, cut at `n`) in deltas of `chunk` bytes (the last may be shorter), each delta in a
 *   turn of the event loop of its own (`setImmediate`), as a model stream read from a socket
 *   arrives (n ≤ 64 MiB, 1 ≤ chunk). The benchmark's long reply.
 *
 * A directive with malformed arguments (`/echo:sleep soon`) rejects with RUNNER_FAILED and its
 * usage. Waits are abortable: when `signal` aborts, the run rejects with the signal's reason (see
 * {@link RunInput.signal}) and sends no further delta. The runner spawns no processes, so
 * `killSession` is a no-op; `close` aborts runs that are waiting.
 */
export function createEchoRunner(_options: EchoRunnerOptions = {}): AgentRunner {
  const closer = new AbortController();

  function emitWords(text: string, input: RunInput): RunOutput {
    for (const word of text.match(WORDS) ?? []) {
      if (input.signal.aborted) throw abortError(input.signal);
      input.onDelta(word);
    }
    return { text, stopReason: "stop" };
  }

  async function runDirective(name: string, input: RunInput): Promise<RunOutput> {
    const signals = [input.signal, closer.signal];
    const { message } = input;
    if (name === "error") {
      const match = ERROR_DIRECTIVE.exec(message);
      throw new GatewayError("RUNNER_FAILED", match?.[1] || "echo:error");
    }
    if (name === "sleep") {
      const match = SLEEP_DIRECTIVE.exec(message);
      const ms = Number(match?.[1]);
      if (match === null || ms > ECHO_MAX_DELAY_MS) throw usage("/echo:sleep <ms> <text>", `ms at most ${ECHO_MAX_DELAY_MS}`);
      await abortableDelay(ms, signals);
      return emitWords(`Echo: ${match[2] ?? ""}`, input);
    }
    if (name === "bytes") return emitBytes(message, input, signals);
    const match = STREAM_DIRECTIVE.exec(message);
    const count = Number(match?.[1]);
    const ms = Number(match?.[2]);
    if (match === null || count > ECHO_MAX_TICKS || ms > ECHO_MAX_DELAY_MS) {
      throw usage("/echo:stream <n> <ms>", `n at most ${ECHO_MAX_TICKS}, ms at most ${ECHO_MAX_DELAY_MS}`);
    }
    let text = "";
    for (let tick = 1; tick <= count; tick += 1) {
      if (tick > 1) await abortableDelay(ms, signals);
      if (input.signal.aborted) throw abortError(input.signal);
      const delta = `tick ${tick} `;
      text += delta;
      input.onDelta(delta);
    }
    return { text, stopReason: "stop" };
  }

  return {
    kind: "echo",
    // Not `async`: the plain path must stay free of extra awaits (it is benchmarked).
    run(input: RunInput): Promise<RunOutput> {
      if (closer.signal.aborted) return Promise.reject(runnerClosedError("echo"));
      if (input.signal.aborted) return Promise.reject(abortError(input.signal));
      const directive = DIRECTIVE.exec(input.message);
      if (directive?.[1] !== undefined) return runDirective(directive[1], input);
      try {
        return Promise.resolve(emitWords(`Echo: ${input.message}`, input));
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new GatewayError("RUNNER_FAILED", String(error)));
      }
    },
    killSession(): Promise<void> {
      return Promise.resolve();
    },
    close(): Promise<void> {
      if (!closer.signal.aborted) closer.abort(runnerClosedError("echo"));
      return Promise.resolve();
    },
  };
}

async function emitBytes(message: string, input: RunInput, signals: readonly AbortSignal[]): Promise<RunOutput> {
  const match = BYTES_DIRECTIVE.exec(message);
  const size = Number(match?.[1]);
  const chunk = Number(match?.[2]);
  if (match === null || size > ECHO_MAX_BYTES || chunk < 1) throw usage("/echo:bytes <n> <chunk>", `n at most ${ECHO_MAX_BYTES}, chunk at least 1`);
  const text = ECHO_BYTES_LINE.repeat(Math.ceil(size / ECHO_BYTES_LINE.length)).slice(0, size);
  for (let at = 0; at < size; at += chunk) {
    if (at > 0) await nextTurn(signals);
    if (input.signal.aborted) throw abortError(input.signal);
    input.onDelta(text.slice(at, at + chunk));
  }
  return { text, stopReason: "stop" };
}

/** Resolves in the next turn of the event loop (after I/O), or rejects once one of `signals` has aborted. */
function nextTurn(signals: readonly AbortSignal[]): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    setImmediate(() => {
      const aborted = signals.find((signal) => signal.aborted);
      if (aborted === undefined) resolve();
      else reject(abortError(aborted));
    });
  });
}

function usage(form: string, limits: string): GatewayError {
  return new GatewayError("RUNNER_FAILED", `Malformed echo directive; use ${form} (${limits})`, { fix: null });
}
