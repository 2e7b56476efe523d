/**
 * The part of OpenClaw's plugin API this plugin uses, typed structurally (OpenClaw 2026.9.6,
 * `openclaw/plugin-sdk/plugin-entry`): the plugin does not depend on the `openclaw` package, and
 * reads every field defensively, since another OpenClaw release may shape them differently.
 */

/** `api.logger` / a service's `ctx.logger`: lines go to OpenClaw's log under the `plugins` subsystem. */
export interface PluginLogger {
  debug?: ((message: string) => void) | undefined;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** `session_end`'s event (`reason`: new, reset, idle, daily, compaction, deleted, shutdown, restart, unknown). */
export interface SessionEndEvent {
  readonly sessionId?: string | undefined;
  readonly sessionKey?: string | undefined;
  readonly reason?: string | undefined;
}

/** The hook context of session hooks. */
export interface SessionHookContext {
  readonly agentId?: string | undefined;
  readonly sessionKey?: string | undefined;
  readonly sessionId?: string | undefined;
}

/** What `registerService(...).start(ctx)` receives. */
export interface ServiceContext {
  readonly stateDir: string;
  readonly logger?: PluginLogger | undefined;
}

export interface PluginService {
  readonly id: string;
  start(ctx: ServiceContext): void | Promise<void>;
  stop?(ctx: ServiceContext): void | Promise<void>;
}

/** The `api` object `register(api)` receives. */
export interface PluginApi {
  /** `full` in the gateway; `discovery`, `cli-metadata`, … when OpenClaw only inspects plugins. */
  readonly registrationMode?: string | undefined;
  /** `plugins.entries.<id>.config`, already checked against the manifest's JSON schema. */
  readonly pluginConfig?: unknown;
  readonly logger: PluginLogger;
  readonly runtime?: { readonly version?: unknown; readonly state?: { readonly resolveStateDir?: (() => string) | undefined } | undefined } | undefined;
  on(hook: "session_end", handler: (event: SessionEndEvent, ctx: SessionHookContext) => void): void;
  registerService(service: PluginService): void;
}
