import type { SandboxSession } from "@ocgw/gateway/legacy";
import { type CompatGuard, createCompatGuard } from "./compat.ts";
import { type PluginConfig, parsePluginConfig } from "./config.ts";
import type { PluginApi, SessionEndEvent, SessionHookContext } from "./host.ts";
import { reclaim } from "./reclaim.ts";
import { reportOutcome } from "./report.ts";
import { createSerialQueue } from "./serial.ts";
import { createSweeper } from "./sweeper.ts";

/** The plugin's id: `plugins.entries.ocgw-reclaim` in openclaw.json (the manifest says the same). */
export const PLUGIN_ID = "ocgw-reclaim";
/** The first sweep waits this long after the service starts (ms), so it never competes with start-up. */
const FIRST_PASS_DELAY_MS = 2_000;
/** How long `stop()` waits for work in flight (ms): inside OpenClaw's 5 s service stop budget. */
const STOP_BUDGET_MS = 3_000;

interface Runtime {
  readonly api: PluginApi;
  readonly config: PluginConfig;
  readonly guard: CompatGuard;
  /** Why nothing is removed, when nothing is: `dry run`, `deletions disabled`. */
  readonly planOnly: string | undefined;
  readonly told: Set<string>;
  stateDir: string | undefined;
  cursor: string | undefined;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Runs one job; anything it throws is logged (a config the proof cannot read: once, loudly) and swallowed. */
async function safely(rt: Runtime, label: string, job: () => Promise<void>): Promise<void> {
  try {
    await job();
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (code === "LEGACY_UNSUPPORTED" || code === "LEGACY_UNREADABLE") rt.guard.problem(`OpenClaw's state cannot be read the way this plugin expects, so nothing is removed: ${errorText(error)}`);
    else rt.api.logger.error(`ocgw-reclaim: ${label} failed; nothing more was done: ${errorText(error)}`);
  }
}

function stateDirOf(rt: Runtime): string | undefined {
  if (rt.stateDir !== undefined) return rt.stateDir;
  const resolve = rt.api.runtime?.state?.resolveStateDir;
  return typeof resolve === "function" ? resolve() : undefined;
}

/** A deleted session: its sandbox directory, computed as OpenClaw names it, released under the legacy proof. */
async function releaseDeleted(rt: Runtime, session: SandboxSession): Promise<void> {
  const label = `session_end deleted ${session.key}`;
  await safely(rt, label, async () => {
    const stateDir = stateDirOf(rt);
    if (stateDir === undefined) throw new Error("OpenClaw's state dir is not known yet");
    const outcome = await reclaim({ stateDir, sessions: [session], minAgeMs: 0, includeUserFiles: rt.config.reclaimWorkProducts, act: rt.planOnly === undefined });
    reportOutcome(outcome, { logger: rt.api.logger, guard: rt.guard, label, planOnly: rt.planOnly, told: rt.told });
  });
}

/** One bounded sweep over the sandbox roots; the next pass goes on where this one stopped. */
async function sweepPass(rt: Runtime): Promise<void> {
  await safely(rt, "sweep", async () => {
    const stateDir = stateDirOf(rt);
    if (stateDir === undefined) throw new Error("OpenClaw's state dir is not known");
    const { sweeper } = rt.config;
    const outcome = await reclaim({ stateDir, minAgeMs: sweeper.minAgeMinutes * 60_000, idleDays: sweeper.idleDays, includeUserFiles: rt.config.reclaimWorkProducts, limit: sweeper.maxPerPass, after: rt.cursor, act: rt.planOnly === undefined });
    rt.cursor = outcome.scan.next;
    reportOutcome(outcome, { logger: rt.api.logger, guard: rt.guard, label: rt.cursor === undefined ? "sweep" : "sweep (bounded; the next pass goes on)", planOnly: rt.planOnly, told: rt.told });
  });
}

/** The session a `session_end` names, when it was deleted; undefined for every other reason. */
export function deletedSession(event: SessionEndEvent | undefined, ctx: SessionHookContext | undefined): SandboxSession | undefined {
  if (event?.reason !== "deleted") return undefined;
  const key = event.sessionKey ?? ctx?.sessionKey;
  if (typeof key !== "string" || key.trim() === "") return undefined;
  const agentId = ctx?.agentId ?? /^agent:([^:]+):/.exec(key)?.[1];
  return typeof agentId === "string" && agentId !== "" ? { key, agentId } : undefined;
}

function bounded(work: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    timer.unref();
    void work.finally(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * `register(api)`: the `session_end` hook and the sweeper service, in the gateway only
 * (`registrationMode` `full`). A bad config is logged and the plugin does nothing.
 */
export function registerReclaim(api: PluginApi): void {
  if (api.registrationMode !== undefined && api.registrationMode !== "full") return;
  let config: PluginConfig;
  try {
    config = parsePluginConfig(api.pluginConfig);
  } catch (error) {
    api.logger.error(`ocgw-reclaim: disabled: ${errorText(error)}`);
    return;
  }
  const guard = createCompatGuard({ version: api.runtime?.version, allowUntested: config.allowUntestedOpenClaw, logger: api.logger });
  const planOnly = config.dryRun ? "dry run" : guard.deletionsAllowed ? undefined : "deletions disabled";
  const rt: Runtime = { api, config, guard, planOnly, told: new Set(), stateDir: undefined, cursor: undefined };
  const queue = createSerialQueue();
  const sweeper = createSweeper({ intervalMs: config.sweeper.intervalMinutes * 60_000, firstDelayMs: FIRST_PASS_DELAY_MS, pass: () => queue.run(() => sweepPass(rt)) });
  if (config.onDelete.enabled) {
    api.on("session_end", (event, ctx) => {
      try {
        const session = deletedSession(event, ctx);
        // Queued, not awaited: OpenClaw's session handling never waits for (or sees an error of) the release.
        if (session !== undefined) void queue.run(() => releaseDeleted(rt, session));
      } catch (error) {
        api.logger.error(`ocgw-reclaim: session_end handler failed; nothing was done: ${errorText(error)}`);
      }
    });
  }
  api.registerService({
    id: `${PLUGIN_ID}-sweeper`,
    start(ctx) {
      rt.stateDir = ctx.stateDir;
      const parts = [config.onDelete.enabled ? "release on session delete" : undefined, config.sweeper.enabled ? `sweep every ${config.sweeper.intervalMinutes} min` : undefined].filter(Boolean);
      api.logger.info(`ocgw-reclaim: watching ${ctx.stateDir}: ${parts.join(", ") || "every part disabled"}${planOnly === undefined ? "" : ` (${planOnly}: nothing is removed)`}`);
      if (config.sweeper.enabled) sweeper.start();
    },
    async stop() {
      await bounded(Promise.all([sweeper.stop(), queue.idle()]), STOP_BUDGET_MS);
    },
  });
}
