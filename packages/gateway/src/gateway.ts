import { randomUUID } from "node:crypto";
import { mkdirSync, statSync } from "node:fs";
import * as path from "node:path";
import { type EphemeralProvider, type FsPort, createEphemeralProvider, createNoneProvider, createPersistentProvider, defaultEphemeralRoot, resolveAgentWorkspaceDir } from "@ocgw/workspace";
import { type Collector, type CollectorReport, createCollector } from "./collector.ts";
import { type GatewayConfigInput, type ResolvedConfig, bindHost, isLoopbackBind, resolveConfig } from "./config/index.ts";
import type { GatewayContext } from "./context.ts";
import { GatewayError } from "./errors.ts";
import { GATEWAY_EVENTS, createMethods } from "./methods/index.ts";
import { type ProtocolLimits, type ProtocolServer, startProtocolServer } from "./protocol/index.ts";
import { type AgentRunner, type RunnerSpec, createRunner } from "./runners/index.ts";
import { createRunManager } from "./runs/run-manager.ts";
import { mainSessionKey } from "./sessions/keys.ts";
import { createWorkspaceLifecycle } from "./sessions/workspaces.ts";
import { type SessionRecord, type Store, openStore } from "./store/index.ts";

export const GATEWAY_VERSION = "0.1.0";

/** Finished runs are kept this long for idempotent replays and agent.wait: 24 h. */
export const RUN_RETENTION_MS = 24 * 60 * 60_000;

export interface GatewayOptions {
  /** One line per notable event (ready, collector results, failures). Default: none. */
  log?: ((line: string) => void) | undefined;
  /** Bound on graceful shutdown: runs are aborted and workspaces released within this. Default 10,000 ms. */
  shutdownTimeoutMs?: number | undefined;
  /** Protocol limits beyond the config (tests shorten tick and handshake timers). */
  limits?: ProtocolLimits | undefined;
  /**
   * The file-system port the ephemeral provider creates, marks and removes workspaces through
   * (default @ocgw/workspace's nodeFsPort). The fault-injection seam: tests wrap the real port to
   * fail, or SIGKILL the process, at a chosen operation. The collector always uses the real fs.
   */
  workspaceFs?: FsPort | undefined;
}

export interface GatewayHandle {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly config: ResolvedConfig;
  readonly store: Store;
  readonly instanceId: string;
  readonly ephemeralRoot: string;
  /** Settles when the start-up collection (if enabled) has finished; never rejects. */
  readonly startupCollection: Promise<CollectorReport | undefined>;
  /** Runs the collector now (`workspaces.gc`). */
  collect(options?: { dryRun?: boolean }): Promise<CollectorReport>;
  /** Graceful shutdown: stop accepting, abort runs, release every workspace, close. Idempotent. */
  close(reason?: string): Promise<void>;
}

function isResolved(input: unknown): input is ResolvedConfig {
  return typeof input === "object" && input !== null && Array.isArray((input as ResolvedConfig).agentIds) && typeof (input as ResolvedConfig).defaultAgentId === "string";
}

function runnerSpec(config: ResolvedConfig): RunnerSpec {
  const runner = config.runner;
  if (runner.kind === "command") return { kind: "command", argv: runner.command.argv, env: runner.command.env };
  if (runner.kind === "openai") {
    const apiKey = runner.openai.apiKey ?? process.env[runner.openai.apiKeyEnv];
    return { kind: "openai", baseUrl: runner.openai.baseUrl as string, model: runner.openai.model as string, ...(apiKey === undefined ? {} : { apiKey }) };
  }
  return { kind: "echo" };
}

/**
 * Starts a gateway: state dir and store, workspace providers (the ephemeral one registers this
 * instance), runner, protocol server; then, after it is ready and without blocking it, the
 * start-up collector and its interval. The programmatic API behind `ocgw gateway run` and the tests.
 */
export async function startGateway(input: ResolvedConfig | GatewayConfigInput = {}, options: GatewayOptions = {}): Promise<GatewayHandle> {
  const config = isResolved(input) ? input : resolveConfig(input);
  const log = options.log ?? (() => undefined);
  const host = bindHost(config.gateway.bind);
  if (!isLoopbackBind(config.gateway.bind) && config.gateway.auth.token === undefined) {
    throw new GatewayError("INSECURE_BIND", `Refusing to bind ${host} without gateway.auth.token`);
  }
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  const store = openStore({ path: path.join(config.stateDir, "ocgw.sqlite") });
  const cleanups: (() => Promise<void> | void)[] = [() => store.close()];
  const undo = async (): Promise<void> => {
    for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => undefined);
  };
  try {
    const interrupted = store.failRunningRuns(Date.now(), "the gateway stopped during this run");
    if (interrupted > 0) log(`${interrupted} run(s) interrupted by the previous stop marked as error`);

    const agentConfig = {
      stateDir: config.stateDir,
      defaultsWorkspace: config.agents.defaults.workspace,
      defaultAgentId: config.defaultAgentId,
      envWorkspace: process.env.OPENCLAW_WORKSPACE_DIR,
      agentWorkspaces: Object.fromEntries(Object.entries(config.agents.entries).map(([id, entry]) => [id, entry.workspace])),
    };
    const ephemeralRoot = config.workspace.ephemeral.root ?? defaultEphemeralRoot();
    const ephemeral: EphemeralProvider = await createEphemeralProvider({
      root: ephemeralRoot,
      maxLeases: config.workspace.ephemeral.maxLeases,
      defaultAgentId: config.defaultAgentId,
      seed: config.agents.defaults.skipBootstrap ? "none" : "templates",
      liveness: { staleMs: config.workspace.ephemeral.staleMs },
      fs: options.workspaceFs,
    });
    cleanups.push(() => ephemeral.close());
    const providers = {
      ephemeral,
      agent: createPersistentProvider({ ...agentConfig, skipBootstrap: config.agents.defaults.skipBootstrap }),
      persistent: createPersistentProvider({ ...agentConfig, layout: "session", skipBootstrap: config.agents.defaults.skipBootstrap }),
      none: createNoneProvider({ defaultAgentId: config.defaultAgentId }),
    };
    // An agent with an explicit, existing workspace seeds its ephemeral workspaces from it.
    const seeds = new Map<string, string>();
    for (const [id, entry] of Object.entries(config.agents.entries)) {
      const dir = entry.workspace ?? (id === config.defaultAgentId ? config.agents.defaults.workspace : undefined);
      if (dir !== undefined && statSync(dir, { throwIfNoEntry: false })?.isDirectory() === true) seeds.set(id, dir);
    }

    const runner: AgentRunner = createRunner(runnerSpec(config));
    cleanups.push(() => runner.close());

    // Runs and sessions emit through this before the server exists (never in practice: it starts first).
    const wire: { server?: ProtocolServer } = {};
    const broadcast = (event: string, payload: unknown, filter?: Parameters<ProtocolServer["broadcast"]>[2]): void => wire.server?.broadcast(event, payload, filter);
    const lifecycle = createWorkspaceLifecycle({
      store,
      providers,
      instanceId: ephemeral.instance.id,
      idleTtlMs: config.workspace.ephemeral.idleTtlMs,
      killSessionProcesses: (key) => runner.killSession(key),
      seedFor: (id) => seeds.get(id),
      maxPersistentSessions: config.workspace.persistent.maxSessions,
      log,
    });
    const runs = createRunManager({
      store,
      lifecycle,
      runner,
      defaultTimeoutMs: config.runner.timeoutMs,
      maxQueuedRuns: config.session.maxQueuedRuns,
      deltas: { windowMs: config.gateway.deltaWindowMs, maxBytes: config.gateway.deltaMaxBytes },
      events: { chat: (payload) => broadcast("chat", payload), agent: (payload) => broadcast("agent", payload) },
      log,
    });
    const collector: Collector = createCollector({
      store,
      root: ephemeral.root,
      instance: ephemeral.instance,
      staleMs: config.workspace.ephemeral.staleMs,
      log,
      async housekeeping() {
        const stillFailing = await lifecycle.retryFailed();
        if (stillFailing > 0) log(`${stillFailing} workspace release(s) still failing; retried on the next collection`);
        store.pruneRuns(Date.now() - RUN_RETENTION_MS);
        store.pruneReleasedLeases(Date.now() - config.workspace.gc.retainReleasedMs);
      },
    });
    const startedAt = Date.now();
    const keyContext = { agentIds: config.agentIds, defaultAgentId: config.defaultAgentId, mainKey: config.session.mainKey };

    const context: GatewayContext = {
      config,
      store,
      runs,
      lifecycle,
      keyContext,
      instanceId: ephemeral.instance.id,
      ephemeralRoot: ephemeral.root,
      ensureSession(target, via, mode) {
        const existing = store.getSession(target.key);
        if (existing !== undefined) return existing;
        const now = Date.now();
        const record: SessionRecord = {
          key: target.key,
          sessionId: randomUUID(),
          agentId: target.agentId,
          label: null,
          createdVia: via,
          workspaceMode: mode ?? (target.isMain ? "agent" : config.workspace.implicit),
          createdAt: now,
          updatedAt: now,
          lastInteractionAt: null,
        };
        if (store.insertSession(record)) {
          context.sessionsChanged({ sessionKey: record.key, agentId: record.agentId, sessionId: record.sessionId, reason: "create", session: context.sessionRow(record) });
          return record;
        }
        return store.getSession(target.key) as SessionRecord;
      },
      async endSession(sessionKey, reason) {
        // The release is asked for at once, right after the runs are aborted and before waiting for
        // them: a run admitted meanwhile (queued behind an aborted one) then acquires behind this
        // release and gets a fresh workspace, instead of taking the one being released and being
        // killed with it. The release itself still kills the session's processes before it removes anything.
        const aborted = runs.abortSession(sessionKey, new GatewayError("RUNNER_ABORTED", `session ${reason}`, { fix: null }));
        const released = lifecycle.release(sessionKey, reason);
        await Promise.all([aborted, released]);
      },
      sessionRow(record) {
        const activeRunIds = runs.activeRunIds(record.key);
        return {
          key: record.key,
          kind: "direct",
          sessionId: record.sessionId,
          agentId: record.agentId,
          label: record.label,
          displayName: record.label ?? record.key,
          chatType: "direct",
          createdVia: record.createdVia,
          createdAt: record.createdAt,
          updatedAt: record.updatedAt,
          lastInteractionAt: record.lastInteractionAt,
          status: activeRunIds.length > 0 ? "running" : "idle",
          hasActiveRun: activeRunIds.length > 0,
          activeRunIds,
          workspaceMode: record.workspaceMode,
          workspaceDir: lifecycle.current(record.key)?.path ?? null,
        };
      },
      sessionsChanged(payload) {
        broadcast("sessions.changed", { ...payload, ts: Date.now() }, { filter: (conn) => conn.data.get("sessions.subscribed") === true });
      },
      sessionDefaults() {
        return { defaultAgentId: config.defaultAgentId, mainKey: config.session.mainKey, mainSessionKey: mainSessionKey(config.defaultAgentId, config.session.mainKey), scope: "per-sender" };
      },
      resolvedModel() {
        return { modelProvider: config.runner.kind, model: config.runner.kind === "openai" ? config.runner.openai.model : config.runner.kind };
      },
      agentWorkspace(agentId) {
        return resolveAgentWorkspaceDir(agentId, agentConfig);
      },
      health() {
        const counts = store.countLeases();
        return {
          ok: true,
          ts: Date.now(),
          durationMs: 0,
          defaultAgentId: config.defaultAgentId,
          agents: config.agentIds.map((id) => ({ agentId: id, isDefault: id === config.defaultAgentId })),
          sessions: { count: store.listSessions({ limit: 1 }).total },
          workspaces: { implicit: config.workspace.implicit, root: ephemeral.root, live: lifecycle.live().size, ledger: counts },
        };
      },
      status() {
        return {
          runtimeVersion: GATEWAY_VERSION,
          pid: process.pid,
          uptimeMs: Date.now() - startedAt,
          instanceId: ephemeral.instance.id,
          stateDir: config.stateDir,
          runner: config.runner.kind,
          sessions: { count: store.listSessions({ limit: 1 }).total },
          workspaces: { implicit: config.workspace.implicit, root: ephemeral.root, live: lifecycle.live().size, ledger: store.countLeases() },
        };
      },
      collect(dryRun) {
        return collector.run({ dryRun });
      },
    };

    const protocol = await startProtocolServer({
      host,
      port: config.gateway.port,
      token: config.gateway.auth.token,
      methods: createMethods(context),
      events: GATEWAY_EVENTS,
      serverVersion: GATEWAY_VERSION,
      snapshot: () => ({ uptimeMs: Date.now() - startedAt, sessionDefaults: context.sessionDefaults(), authMode: config.gateway.auth.token === undefined ? "none" : "token", stateDir: config.stateDir }),
      limits: { handshakeTimeoutMs: config.gateway.handshakeTimeoutMs, tickIntervalMs: config.gateway.tickIntervalMs, maxPayloadBytes: config.gateway.maxPayloadBytes, ...options.limits },
      log,
    });
    wire.server = protocol;
    log(`ocgw gateway listening on ${protocol.url} (workspace.implicit=${config.workspace.implicit}, ephemeral root ${ephemeral.root})`);

    // After ready, never blocking it: reclaim what a crash left behind.
    const startupCollection: Promise<CollectorReport | undefined> = config.workspace.gc.onStartup
      ? new Promise<void>((resolve) => setImmediate(resolve))
          .then(() => collector.run())
          .catch((error: unknown) => {
            log(`start-up collection failed: ${error instanceof Error ? error.message : String(error)}`);
            return undefined;
          })
      : Promise.resolve(undefined);
    collector.start(config.workspace.gc.intervalMs);

    let closing: Promise<void> | undefined;
    const shutdownTimeoutMs = options.shutdownTimeoutMs ?? 10_000;
    return {
      url: protocol.url,
      host: protocol.host,
      port: protocol.port,
      config,
      store,
      instanceId: ephemeral.instance.id,
      ephemeralRoot: ephemeral.root,
      startupCollection,
      collect: (collectOptions = {}) => collector.run({ dryRun: collectOptions.dryRun ?? false }),
      close(reason = "gateway stopping") {
        closing ??= (async () => {
          const started = Date.now();
          collector.stop();
          await protocol.close({ reason });
          await runs.shutdown(new GatewayError("GATEWAY_CLOSING", "the gateway is shutting down", { fix: null }), shutdownTimeoutMs);
          const left = await lifecycle.releaseAll("shutdown", Math.max(1000, shutdownTimeoutMs - (Date.now() - started)));
          if (left > 0) log(`${left} workspace(s) not released before the shutdown deadline; the next start's collector reclaims them`);
          await startupCollection;
          // A collection still running (periodic, workspaces.gc) uses the store: let it finish first.
          await collector.close();
          await undo();
        })();
        return closing;
      },
    };
  } catch (error) {
    await undo();
    throw error;
  }
}
