import { GatewayError } from "../errors.ts";
import { abortError, runnerClosedError } from "./abort.ts";
import { createSseDecoder } from "./sse.ts";
import type { AgentRunner, OpenAIRunnerOptions, RunInput, RunOutput } from "./types.ts";
import { isRecord } from "../util/guards.ts";

/** Characters of an error response's body quoted in the RUNNER_FAILED message. */
export const ERROR_BODY_EXCERPT_CHARS = 500;
/** Bytes of an error response's body read at most (the rest is discarded). */
const ERROR_BODY_READ_BYTES = 64 * 1024;

type StopReason = RunOutput["stopReason"];

/**
 * Streams a reply from an OpenAI-compatible `POST <baseUrl>/chat/completions` endpoint (OpenAI,
 * vLLM, Ollama, llama.cpp, LiteLLM …). The request is `{ model, stream: true, messages }` with the
 * session's history followed by the new user message, and `Authorization: Bearer <apiKey>` when a
 * key is set. Each `choices[0].delta.content` of the SSE stream is a delta; `data: [DONE]` ends the
 * reply (the connection is then closed without waiting for the server to end it).
 *
 * `finish_reason` "length" gives stopReason "length", "content_filter" gives "error", anything
 * else "stop"; `usage` (prompt/completion tokens) is passed on when the server sends it. A
 * server that answers with plain JSON instead of a stream is accepted too. HTTP status ≥ 400,
 * an unreachable server, an `error` object in the stream, malformed data or a stream that ends
 * before `[DONE]` and without a finish_reason reject with GatewayError("RUNNER_FAILED"). Abort
 * goes through the fetch signal, so the connection is closed at once. The runner spawns no
 * processes: `killSession` is a no-op and `close` aborts requests in flight.
 */
export function createOpenAIRunner(options: OpenAIRunnerOptions): AgentRunner {
  const { url, model, apiKey } = validateOpenAIOptions(options);
  const inFlight = new Set<AbortController>();
  let closed = false;

  async function run(input: RunInput): Promise<RunOutput> {
    if (closed) throw runnerClosedError("openai");
    if (input.signal.aborted) throw abortError(input.signal);
    const local = new AbortController();
    inFlight.add(local);
    const signal = AbortSignal.any([input.signal, local.signal]);
    const stopped = (): Error => abortError(input.signal.aborted ? input.signal : local.signal);
    try {
      const headers: Record<string, string> = { "content-type": "application/json", accept: "text/event-stream" };
      if (apiKey !== undefined) headers["authorization"] = `Bearer ${apiKey}`;
      const messages = [...input.history.map((turn) => ({ role: turn.role, content: turn.text })), { role: "user", content: input.message }];
      let response: Response;
      try {
        response = await fetch(url, { method: "POST", headers, body: JSON.stringify({ model, stream: true, messages }), signal });
      } catch (error) {
        if (signal.aborted) throw stopped();
        throw new GatewayError("RUNNER_FAILED", `Could not reach ${url}: ${describe(error)}`, { cause: error });
      }
      if (response.status >= 400) {
        const body = await readExcerpt(response).catch(() => "");
        if (signal.aborted) throw stopped();
        throw new GatewayError("RUNNER_FAILED", `${url} answered HTTP ${response.status}${body === "" ? "" : `: ${body}`}`, {
          details: { status: response.status, body },
        });
      }
      const reply = createReply(input, () => {
        if (signal.aborted) throw stopped();
      });
      if (response.body === null) throw new GatewayError("RUNNER_FAILED", `${url} answered HTTP ${response.status} without a body`);
      if ((response.headers.get("content-type") ?? "").includes("application/json")) {
        let payload: unknown;
        try {
          payload = JSON.parse(await response.text());
        } catch (error) {
          if (signal.aborted) throw stopped();
          throw new GatewayError("RUNNER_FAILED", `${url} answered with malformed JSON: ${describe(error)}`, { cause: error });
        }
        reply.addCompletion(payload);
        return reply.finish(true);
      }
      const decoder = createSseDecoder((data) => reply.addEvent(data));
      const reader = response.body.getReader();
      try {
        while (!reply.done) {
          const chunk = await reader.read().catch((error: unknown) => {
            if (signal.aborted) throw stopped();
            throw new GatewayError("RUNNER_FAILED", `The stream from ${url} broke off: ${describe(error)}`, { cause: error });
          });
          if (chunk.done) {
            decoder.end();
            break;
          }
          decoder.push(chunk.value);
          // One body chunk per turn of the event loop. A read resolves at once while the stream
          // holds data, and libuv delivers up to 32 socket reads (2 MiB) in one poll phase: without
          // this, a fast model's whole buffered reply is decoded and broadcast before any timer,
          // request or other socket of the gateway gets a turn (~200 ms for 1 MiB on a 2-vCPU VM).
          await nextTurn();
        }
      } finally {
        if (!reply.done) reader.cancel().catch(() => undefined);
      }
      return reply.finish(false);
    } finally {
      inFlight.delete(local);
      // Closes a connection the server keeps open after [DONE] (or after our error).
      local.abort();
    }
  }

  return {
    kind: "openai",
    run,
    killSession(): Promise<void> {
      return Promise.resolve();
    },
    close(): Promise<void> {
      closed = true;
      for (const controller of [...inFlight]) controller.abort(runnerClosedError("openai"));
      inFlight.clear();
      return Promise.resolve();
    },
  };
}

interface Reply {
  /** True once `[DONE]` has arrived; later events are ignored. */
  readonly done: boolean;
  addEvent(data: string): void;
  addCompletion(payload: unknown): void;
  finish(complete: boolean): RunOutput;
}

/** Accumulates one reply from stream events (or from a whole non-streamed completion). */
function createReply(input: RunInput, checkStopped: () => void): Reply {
  let text = "";
  let done = false;
  let finishReason: string | undefined;
  let usage: RunOutput["usage"];

  const addChunk = (payload: unknown, part: "delta" | "message"): void => {
    if (!isRecord(payload)) throw new GatewayError("RUNNER_FAILED", "The model endpoint sent data that is not a JSON object");
    const error = payload["error"];
    if (error !== undefined && error !== null) {
      const message = isRecord(error) && typeof error["message"] === "string" ? error["message"] : JSON.stringify(error);
      throw new GatewayError("RUNNER_FAILED", `The model endpoint reported an error: ${message}`, { details: { error } });
    }
    const choices = payload["choices"];
    const choice: unknown = Array.isArray(choices) ? choices[0] : undefined;
    if (isRecord(choice)) {
      const body = choice[part];
      const content = isRecord(body) ? body["content"] : undefined;
      if (typeof content === "string" && content !== "") {
        checkStopped();
        text += content;
        input.onDelta(content);
      }
      const finish = choice["finish_reason"];
      if (typeof finish === "string") finishReason = finish;
    }
    const counts = payload["usage"];
    if (isRecord(counts)) {
      usage = {};
      if (typeof counts["prompt_tokens"] === "number") usage.input = counts["prompt_tokens"];
      if (typeof counts["completion_tokens"] === "number") usage.output = counts["completion_tokens"];
    }
  };

  return {
    get done() {
      return done;
    },
    addEvent(data: string): void {
      if (done) return;
      if (data.trim() === "[DONE]") {
        done = true;
        return;
      }
      let payload: unknown;
      try {
        payload = JSON.parse(data);
      } catch (error) {
        throw new GatewayError("RUNNER_FAILED", `The stream carried malformed data: ${JSON.stringify(data.slice(0, 200))}`, { cause: error });
      }
      addChunk(payload, "delta");
    },
    addCompletion(payload: unknown): void {
      addChunk(payload, "message");
    },
    finish(complete: boolean): RunOutput {
      if (!complete && !done && finishReason === undefined) {
        throw new GatewayError("RUNNER_FAILED", "The stream ended before [DONE] and without a finish_reason");
      }
      const stopReason: StopReason = finishReason === "length" ? "length" : finishReason === "content_filter" ? "error" : "stop";
      return usage === undefined ? { text, stopReason } : { text, stopReason, usage };
    },
  };
}

/** RUNNER_CONFIG unless `options` holds an http(s) baseUrl, a model and (optionally) a string apiKey. */
export function validateOpenAIOptions(options: OpenAIRunnerOptions): { url: string; model: string; apiKey: string | undefined } {
  const raw = options as unknown as Record<string, unknown> | null | undefined;
  const baseUrl = raw?.["baseUrl"];
  let parsed: URL | undefined;
  try {
    parsed = typeof baseUrl === "string" ? new URL(baseUrl) : undefined;
  } catch {
    parsed = undefined;
  }
  if (typeof baseUrl !== "string" || parsed === undefined || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) {
    throw new GatewayError("RUNNER_CONFIG", "The openai runner needs baseUrl: an http(s) URL such as https://api.openai.com/v1");
  }
  const model = raw?.["model"];
  if (typeof model !== "string" || model.trim() === "") throw new GatewayError("RUNNER_CONFIG", "The openai runner needs model: a non-empty string");
  const apiKey = raw?.["apiKey"];
  if (apiKey !== undefined && typeof apiKey !== "string") throw new GatewayError("RUNNER_CONFIG", "The openai runner's apiKey must be a string");
  return { url: `${baseUrl.replace(/\/+$/, "")}/chat/completions`, model, apiKey: apiKey === "" ? undefined : apiKey };
}

/** Resolves in the check phase of this turn of the event loop, after its I/O. */
function nextTurn(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause: unknown = error.cause;
  return cause instanceof Error && cause.message !== "" ? `${error.message} (${cause.message})` : error.message;
}

/** The first {@link ERROR_BODY_EXCERPT_CHARS} characters of the body, reading no more than needed. */
async function readExcerpt(response: Response): Promise<string> {
  if (response.body === null) return "";
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let read = 0;
  try {
    while (text.length < ERROR_BODY_EXCERPT_CHARS && read < ERROR_BODY_READ_BYTES) {
      const chunk = await reader.read();
      if (chunk.done) break;
      read += chunk.value.byteLength;
      text += decoder.decode(chunk.value, { stream: true });
    }
    text += decoder.decode();
  } finally {
    reader.cancel().catch(() => undefined);
  }
  return text.slice(0, ERROR_BODY_EXCERPT_CHARS).trim();
}
