import { randomUUID } from "node:crypto";
import { GatewayError } from "../errors.ts";
import type { GatewayClient, GatewayEvent } from "./connect.ts";

/** Default bound on a whole chat turn (send → final), in ms. */
export const DEFAULT_CHAT_TIMEOUT_MS = 10 * 60_000; // 10 min, the gateway's default run timeout

/** Options of {@link sendChat}. */
export interface SendChatOptions {
  /** The session key (`agent:<id>:<name>` or a bare name); an unknown key creates an implicit session. */
  sessionKey: string;
  message: string;
  /** false = run without a workspace (`chat.send {workspace: false}`). Default: the session's workspace. */
  workspace?: boolean | undefined;
  /** The run id. Default: a fresh random UUID. */
  idempotencyKey?: string | undefined;
  /** Bound on the whole turn, in ms; when it passes, the run is aborted (chat.abort) and REQUEST_TIMEOUT thrown. Default 10 min. */
  timeoutMs?: number | undefined;
  /** Called with each piece of reply text as it streams in. */
  onDelta?: ((text: string) => void) | undefined;
}

/** How a chat turn ended. */
export interface ChatOutcome {
  readonly runId: string;
  /** The canonical session key, as the gateway reported it (the given key until an event says otherwise). */
  readonly sessionKey: string;
  readonly state: "final" | "error" | "aborted";
  /** The reply text received (all of it for `final`). */
  readonly text: string;
  /** Why the run failed, for `error`; "aborted" for `aborted`. */
  readonly errorMessage?: string | undefined;
}

function messageText(message: unknown): string {
  const content = typeof message === "object" && message !== null ? (message as { content?: unknown }).content : undefined;
  if (!Array.isArray(content)) return "";
  return content.map((part: unknown) => (typeof part === "object" && part !== null && typeof (part as { text?: unknown }).text === "string" ? (part as { text: string }).text : "")).join("");
}

/**
 * One chat turn: `chat.send` with a fresh idempotency key, then the `chat` events of that run
 * (deltas handed to `onDelta`) until `final`, `error` or `aborted`. Events are listened to
 * before the request leaves, so none is missed.
 *
 * @throws GatewayError `RPC_FAILED` when chat.send is refused, `REQUEST_TIMEOUT` when the turn
 *   outlives timeoutMs (the run is aborted first), `GATEWAY_UNREACHABLE` when the connection drops.
 */
export async function sendChat(client: GatewayClient, options: SendChatOptions): Promise<ChatOutcome> {
  const runId = options.idempotencyKey ?? randomUUID();
  const timeoutMs = options.timeoutMs ?? DEFAULT_CHAT_TIMEOUT_MS;
  let text = "";
  let sessionKey = options.sessionKey;
  let settle!: (outcome: ChatOutcome) => void;
  const ended = new Promise<ChatOutcome>((resolve) => (settle = resolve));

  const onChat = (event: GatewayEvent): void => {
    const payload = event.payload as Record<string, unknown> | null;
    if (typeof payload !== "object" || payload === null || payload["runId"] !== runId) return;
    if (typeof payload["sessionKey"] === "string") sessionKey = payload["sessionKey"];
    switch (payload["state"]) {
      case "delta": {
        const delta = typeof payload["deltaText"] === "string" ? payload["deltaText"] : "";
        if (delta !== "") {
          text += delta;
          options.onDelta?.(delta);
        }
        return;
      }
      case "final": {
        // A reply that arrived without deltas still reaches the caller.
        const full = messageText(payload["message"]);
        if (text === "" && full !== "") {
          text = full;
          options.onDelta?.(full);
        }
        settle({ runId, sessionKey, state: "final", text });
        return;
      }
      case "aborted":
        settle({ runId, sessionKey, state: "aborted", text, errorMessage: "aborted" });
        return;
      case "error":
        settle({ runId, sessionKey, state: "error", text, errorMessage: typeof payload["errorMessage"] === "string" ? payload["errorMessage"] : "the run failed" });
        return;
    }
  };
  const unsubscribe = client.on("chat", onChat);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const params: Record<string, unknown> = { sessionKey: options.sessionKey, message: options.message, idempotencyKey: runId };
    if (options.workspace === false) params["workspace"] = false;
    const ack = (await client.call("chat.send", params)) as { status?: unknown } | undefined;
    // A cached, already finished run sends no further events.
    if (ack?.status === "ok") return { runId, sessionKey, state: "final", text };
    const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)));
    const lost = client.closed.then((info) => {
      throw new GatewayError("GATEWAY_UNREACHABLE", `The connection to ${client.url} closed (${info.code}) before run ${runId} ended`, { details: { url: client.url, runId } });
    });
    lost.catch(() => undefined); // it rejects later, when the caller closes the connection
    const outcome = await Promise.race([ended, timedOut, lost]);
    if (outcome === "timeout") {
      await client.call("chat.abort", { sessionKey: options.sessionKey, runId }, { timeoutMs: 5000 }).catch(() => undefined);
      throw new GatewayError("REQUEST_TIMEOUT", `Run ${runId} did not end within ${timeoutMs} ms and was aborted`, { details: { runId, timeoutMs } });
    }
    return outcome;
  } finally {
    clearTimeout(timer);
    unsubscribe();
  }
}
