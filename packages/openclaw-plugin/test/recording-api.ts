/**
 * OpenClaw's side of `register(api)` for the unit tests: an `api` that records what the plugin
 * registers and logs. The real host is exercised by the real-OpenClaw suite (test/openclaw/).
 */
import type { PluginApi, PluginService, SessionEndEvent, SessionHookContext } from "../src/index.ts";

export interface Recorded {
  readonly api: PluginApi;
  readonly lines: { level: "debug" | "info" | "warn" | "error"; message: string }[];
  readonly hooks: ((event: SessionEndEvent, ctx: SessionHookContext) => void)[];
  readonly services: PluginService[];
  /** Calls every session_end handler, as OpenClaw does. */
  sessionEnd(event: SessionEndEvent, ctx: SessionHookContext): void;
  /** The messages logged at `level` (all levels when omitted). */
  messages(level?: "info" | "warn" | "error"): string[];
}

export function recordingApi(options: { config?: unknown; version?: unknown; mode?: string } = {}): Recorded {
  const lines: Recorded["lines"] = [];
  const hooks: Recorded["hooks"] = [];
  const services: PluginService[] = [];
  const log = (level: Recorded["lines"][number]["level"]) => (message: string) => void lines.push({ level, message });
  const api: PluginApi = {
    registrationMode: options.mode ?? "full",
    pluginConfig: options.config,
    logger: { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") },
    runtime: { version: "version" in options ? options.version : "2026.9.6" },
    on: (_hook, handler) => void hooks.push(handler),
    registerService: (service) => void services.push(service),
  };
  return {
    api,
    lines,
    hooks,
    services,
    sessionEnd: (event, ctx) => {
      for (const hook of hooks) hook(event, ctx);
    },
    messages: (level) => lines.filter((line) => level === undefined || line.level === level).map((line) => line.message),
  };
}
