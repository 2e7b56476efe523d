/**
 * Builds what a running gateway is made of, from a resolved config and its open store: the
 * workspace providers (the ephemeral one registers this instance), the runner, the workspace
 * lifecycle, the run manager, the collector, and the {@link GatewayContext} method handlers see.
 * Nothing here listens: events emitted before {@link GatewayParts.attach} are dropped.
 */
import { randomUUID } from "node:crypto";
import { statSync } from "node:fs";
import {
  type AgentWorkspaceConfig,
  type EphemeralProvider,
  type FsPort,
  createEphemeralProvider,
  createNoneProvider,
  createPersistentProvider,
  defaultEphemeralRoot,
  resolveAgentWorkspaceDir,
} from "@ocgw/workspace";
import { type Collector, createCollector } from "./collector.ts";
import type { ResolvedConfig } from "./config/index.ts";
import type { GatewayContext } from "./context.ts";
import { GatewayError } from "./errors.ts";
import type { BroadcastOptions, ProtocolServer } from "./protocol/index.ts";
import { type RunnerSpec, createRunner } from "./runners/index.ts";
import { RUN_OWNER } from "./runners/orphans.ts";
import { type RunManager, createRunManager } from "./runs/run-manager.ts";
import { type CanonicalKey, mainSessionKey } from "./sessions/keys.ts";
import { type WorkspaceLifecycle, createWorkspaceLifecycle } from "./sessions/workspaces.ts";
import type { SessionOrigin, SessionRecord, Store, WorkspaceMode } from "./store/index.ts";
import type { Cleanup } from "./shutdown.ts";
import { GATEWAY_VERSION } from "./version.ts";

/** Finished runs are kept this long for idempotent replays and agent.wait: 24 h. */
export const RUN_RETENTION_MS = 24 * 60 * 60_000;

export interface GatewayPartsOptions {
  log: (line: string) => void;
  /** The ephemeral provider's file-system port (the fault-injection seam); default the real fs. */
  workspaceFs: FsPort | undefined;
  /** Registers a closer for what was just opened (ephemeral provider, runner). */
  defer(cleanup: Cleanup): void;
}

export interface GatewayParts {
  readonly ephemeral: EphemeralProvider;
  readonly lifecycle: WorkspaceLifecycle;
  readonly runs: RunManager;
  readonly collector: Collector;
  readonly context: GatewayContext;
  /** When the gateway counts its uptime from (ms since the epoch). */
  readonly startedAt: number;
  /** Routes the events of runs and sessions to the server from now on. */
  attach(server: ProtocolServer): void;
}

type Broadcast = (event: string, payload: unknown, options?: BroadcastOptions) => void;

function runnerSpec(config: ResolvedConfig): RunnerSpec {
  const runner = config.runner;
  if (runner.kind === "command") return { kind: "command", argv: runner.command.argv, env: runner.command.env };
  if (runner.kind === "openai") {
    const apiKey = runner.openai.apiKey ?? process.env[runner.openai.apiKeyEnv];
    return { kind: "openai", baseUrl: runner.openai.baseUrl as string, model: runner.openai.model as string, ...(apiKey === undefined ? {} : { apiKey }) };
  }
  return { kind: "echo" };
}

function agentWorkspaceConfig(config: ResolvedConfig): AgentWorkspaceConfig {
  return {
    stateDir: config.stateDir,
    defaultsWorkspace: config.agents.defaults.workspace,
    defaultAgentId: config.defaultAgentId,
    envWorkspace: process.env.OPENCLAW_WORKSPACE_DIR,
    agentWorkspaces: Object.fromEntries(Object.entries(config.agents.entries).map(([id, entry]) => [id, entry.workspace])),
  };
}

function openEphemeral(config: ResolvedConfig, fs: FsPort | undefined): Promise<EphemeralProvider> {
  return createEphemeralProvider({
    root: config.workspace.ephemeral.root ?? defaultEphemeralRoot(),
    maxLeases: config.workspace.ephemeral.maxLeases,
    defaultAgentId: config.defaultAgentId,
    seed: config.agents.defaults.skipBootstrap ? "none" : "templates",
    liveness: { staleMs: config.workspace.ephemeral.staleMs },
    fs,
  });
}

function providersFor(config: ResolvedConfig, agentConfig: AgentWorkspaceConfig, ephemeral: EphemeralProvider) {
  const skipBootstrap = config.agents.defaults.skipBootstrap;
  return {
    ephemeral,
    agent: createPersistentProvider({ ...agentConfig, skipBootstrap }),
    persistent: createPersistentProvider({ ...agentConfig, layout: "session", skipBootstrap }),
    none: createNoneProvider({ defaultAgentId: config.defaultAgentId }),
  };
}

/** An agent with an explicit, existing workspace seeds its ephemeral workspaces from it. */
function seedDirectories(config: ResolvedConfig): Map<string, string> {
  const seeds = new Map<string, string>();
  for (const [id, entry] of Object.entries(config.agents.entries)) {
    const dir = entry.workspace ?? (id === config.defaultAgentId ? config.agents.defaults.workspace : undefined);
    if (dir !== undefined && statSync(dir, { throwIfNoEntry: false })?.isDirectory() === true) seeds.set(id, dir);
  }
  return seeds;
}

/** The collector of this instance; its housekeeping retries failed releases and prunes old runs and leases. */
function gatewayCollector(config: ResolvedConfig, store: Store, ephemeral: EphemeralProvider, lifecycle: WorkspaceLifecycle, log: (line: string) => void): Collector {
  return createCollector({
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
}

/**
 * Opens the ephemeral provider and the runner (each registered with `defer` as soon as it is
 * open, so a later failure closes it), then wires lifecycle, runs, collector and context.
 */
export async function buildGatewayParts(config: ResolvedConfig, store: Store, options: GatewayPartsOptions): Promise<GatewayParts> {
  const { log } = options;
  const agentConfig = agentWorkspaceConfig(config);
  const ephemeral = await openEphemeral(config, options.workspaceFs);
  options.defer(() => ephemeral.close());
  const providers = providersFor(config, agentConfig, ephemeral);
  const seeds = seedDirectories(config);
  const runner = createRunner(runnerSpec(config));
  options.defer(async () => {
    // Rejects naming any process that survived SIGKILL: then the tokens stay for the next start.
    await runner.close();
    store.forgetRunProcesses(RUN_OWNER);
  });

  // Runs and sessions emit through this before the server exists (never in practice: it starts first).
  const wire: { server?: ProtocolServer } = {};
  const broadcast: Broadcast = (event, payload, filter) => wire.server?.broadcast(event, payload, filter);
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
  const collector = gatewayCollector(config, store, ephemeral, lifecycle, log);
  const startedAt = Date.now();
  const context = createGatewayContext({ config, store, runs, lifecycle, collector, ephemeral, agentConfig, broadcast, startedAt });
  return { ephemeral, lifecycle, runs, collector, context, startedAt, attach: (server) => void (wire.server = server) };
}

interface ContextDeps {
  config: ResolvedConfig;
  store: Store;
  runs: RunManager;
  lifecycle: WorkspaceLifecycle;
  collector: Collector;
  ephemeral: EphemeralProvider;
  agentConfig: AgentWorkspaceConfig;
  broadcast: Broadcast;
  startedAt: number;
}

function sessionRow(deps: ContextDeps, record: SessionRecord): Record<string, unknown> {
  const activeRunIds = deps.runs.activeRunIds(record.key);
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
    workspaceDir: deps.lifecycle.current(record.key)?.path ?? null,
  };
}

function newSession(deps: ContextDeps, target: CanonicalKey, via: SessionOrigin, mode: WorkspaceMode | undefined): SessionRecord {
  const now = Date.now();
  return {
    key: target.key,
    sessionId: randomUUID(),
    agentId: target.agentId,
    label: null,
    createdVia: via,
    workspaceMode: mode ?? (target.isMain ? "agent" : deps.config.workspace.implicit),
    createdAt: now,
    updatedAt: now,
    lastInteractionAt: null,
  };
}

/** Inserts the row unless the key exists; a new one is announced (`sessions.changed`) once committed. */
function insertSession(deps: ContextDeps, context: GatewayContext, record: SessionRecord): boolean {
  if (!deps.store.insertSession(record)) return false;
  deps.store.onCommit(() => context.sessionsChanged({ sessionKey: record.key, agentId: record.agentId, sessionId: record.sessionId, reason: "create", session: context.sessionRow(record) }));
  return true;
}

/** The existing row, or a new one; a concurrent insert wins. */
function ensureSession(deps: ContextDeps, context: GatewayContext, target: CanonicalKey, via: SessionOrigin, mode: WorkspaceMode | undefined): SessionRecord {
  const existing = deps.store.getSession(target.key);
  if (existing !== undefined) return existing;
  const record = newSession(deps, target, via, mode);
  return insertSession(deps, context, record) ? record : (deps.store.getSession(target.key) as SessionRecord);
}

/**
 * As {@link ensureSession} for an admission: a new row is written with the admission group's
 * COMMIT (store.later), and kept in `admitting` until then, so a second turn on the key in the
 * same read finds it.
 */
function admitSession(
  deps: ContextDeps,
  context: GatewayContext,
  admitting: Map<string, SessionRecord>,
  target: CanonicalKey,
  via: SessionOrigin,
  mode: WorkspaceMode | undefined,
): { session: SessionRecord; created: boolean } {
  const known = admitting.get(target.key) ?? deps.store.getSession(target.key);
  if (known !== undefined) return { session: known, created: false };
  // Its first turn is admitted with it: the row is written with that turn's time as its last interaction.
  const record = { ...newSession(deps, target, via, mode), lastInteractionAt: Date.now() };
  admitting.set(record.key, record);
  deps.store.later(
    () => {
      admitting.delete(record.key);
      insertSession(deps, context, record);
    },
    () => admitting.delete(record.key),
  );
  return { session: record, created: true };
}

function health(deps: ContextDeps): Record<string, unknown> {
  const { config, store, lifecycle, ephemeral } = deps;
  const counts = store.countLeases();
  return {
    ok: true,
    ts: Date.now(),
    durationMs: 0,
    defaultAgentId: config.defaultAgentId,
    agents: config.agentIds.map((id) => ({ agentId: id, isDefault: id === config.defaultAgentId })),
    sessions: { count: store.listSessions({ limit: 1 }).total },
    workspaces: { implicit: config.workspace.implicit, root: ephemeral.root, live: lifecycle.live().size, ledger: counts },
    store: { commits: store.commits },
  };
}

function status(deps: ContextDeps): Record<string, unknown> {
  const { config, store, lifecycle, ephemeral } = deps;
  return {
    runtimeVersion: GATEWAY_VERSION,
    pid: process.pid,
    uptimeMs: Date.now() - deps.startedAt,
    instanceId: ephemeral.instance.id,
    stateDir: config.stateDir,
    runner: config.runner.kind,
    sessions: { count: store.listSessions({ limit: 1 }).total },
    workspaces: { implicit: config.workspace.implicit, root: ephemeral.root, live: lifecycle.live().size, ledger: store.countLeases() },
  };
}

function createGatewayContext(deps: ContextDeps): GatewayContext {
  const { config, store, runs, lifecycle, ephemeral } = deps;
  /** Sessions admitted in the open admission group, not yet written. */
  const admitting = new Map<string, SessionRecord>();
  const context: GatewayContext = {
    config,
    store,
    runs,
    lifecycle,
    keyContext: { agentIds: config.agentIds, defaultAgentId: config.defaultAgentId, mainKey: config.session.mainKey },
    instanceId: ephemeral.instance.id,
    ephemeralRoot: ephemeral.root,
    ensureSession: (target, via, mode) => ensureSession(deps, context, target, via, mode),
    admitSession: (target, via, mode) => admitSession(deps, context, admitting, target, via, mode),
    async endSession(sessionKey, reason) {
      // The release is asked for at once, right after the runs are aborted and before waiting for
      // them: a run admitted meanwhile (queued behind an aborted one) then acquires behind this
      // release and gets a fresh workspace, instead of taking the one being released and being
      // killed with it. The release itself still kills the session's processes before it removes anything.
      const aborted = runs.abortSession(sessionKey, new GatewayError("RUNNER_ABORTED", `session ${reason}`, { fix: null }));
      const released = lifecycle.release(sessionKey, reason);
      await Promise.all([aborted, released]);
    },
    sessionRow: (record) => sessionRow(deps, record),
    sessionsChanged(payload) {
      deps.broadcast("sessions.changed", { ...payload, ts: Date.now() }, { filter: (conn) => conn.data.get("sessions.subscribed") === true });
    },
    sessionDefaults: () => ({ defaultAgentId: config.defaultAgentId, mainKey: config.session.mainKey, mainSessionKey: mainSessionKey(config.defaultAgentId, config.session.mainKey), scope: "per-sender" }),
    resolvedModel: () => ({ modelProvider: config.runner.kind, model: config.runner.kind === "openai" ? config.runner.openai.model : config.runner.kind }),
    agentWorkspace: (agentId) => resolveAgentWorkspaceDir(agentId, deps.agentConfig),
    health: () => health(deps),
    status: () => status(deps),
    collect: (dryRun) => deps.collector.run({ dryRun }),
  };
  return context;
}
