/**
 * `startGateway`, the programmatic API behind `ocgw gateway run` and the tests: it assembles a
 * gateway from its parts (gateway-context.ts), starts the protocol server, schedules collection,
 * and returns the handle whose `close` is the shutdown sequence (shutdown.ts).
 */
import { mkdirSync } from "node:fs";
import * as path from "node:path";
import type { FsPort } from "@ocgw/workspace";
import type { Collector, CollectorReport } from "./collector.ts";
import { type GatewayConfigInput, type ResolvedConfig, bindHost, isLoopbackBind, resolveConfig } from "./config/index.ts";
import { GatewayError } from "./errors.ts";
import { type GatewayParts, buildGatewayParts } from "./gateway-context.ts";
import { GATEWAY_EVENTS, createMethods } from "./methods/index.ts";
import { ensureTokenFile } from "./auth/token-file.ts";
import { DEFAULT_KILL_GRACE_MS } from "./runners/command.ts";
import { stopPreviousRuns } from "./runners/orphans.ts";
import { type ProtocolAuth, type ProtocolLimits, type ProtocolServerOptions, startProtocolServer } from "./protocol/index.ts";
import { createCleanupStack, createShutdown } from "./shutdown.ts";
import { type Store, openStore } from "./store/index.ts";
import { GATEWAY_VERSION } from "./version.ts";

export { GATEWAY_VERSION } from "./version.ts";
export { RUN_RETENTION_MS } from "./gateway-context.ts";

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
  /** The generated token's file (`<stateDir>/gateway.token`) when no token is configured; undefined otherwise. */
  readonly tokenFile: string | undefined;
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

/** The host to bind; INSECURE_BIND when it is not loopback and auth is off. */
function checkedBindHost(config: ResolvedConfig): string {
  const host = bindHost(config.gateway.bind);
  if (!isLoopbackBind(config.gateway.bind) && config.gateway.auth.mode === "none") {
    throw new GatewayError("INSECURE_BIND", `Refusing to bind ${host} with gateway.auth.mode "none"`);
  }
  return host;
}

/** How clients authenticate, and where the token came from (for the ready line: never the token itself). */
async function resolveAuth(config: ResolvedConfig): Promise<{ auth: ProtocolAuth; tokenFile: string | undefined; describe: string }> {
  const { mode, token } = config.gateway.auth;
  if (mode === "none") return { auth: { mode }, tokenFile: undefined, describe: 'auth NONE: gateway.auth.mode is "none"; any local process may connect' };
  if (token !== undefined) return { auth: { mode, token }, tokenFile: undefined, describe: "auth: token (gateway.auth.token)" };
  const file = await ensureTokenFile(config.stateDir);
  return { auth: { mode, token: file.token }, tokenFile: file.path, describe: `auth: token in ${file.path}${file.created ? " (generated)" : ""}` };
}

function protocolOptions(config: ResolvedConfig, host: string, auth: ProtocolAuth, parts: GatewayParts, options: GatewayOptions, log: (line: string) => void): ProtocolServerOptions {
  const { context, startedAt } = parts;
  const { gateway } = config;
  return {
    host,
    port: gateway.port,
    auth,
    allowedOrigins: gateway.controlUi.allowedOrigins,
    rateLimit: gateway.auth.rateLimit,
    methods: createMethods(context),
    events: GATEWAY_EVENTS,
    serverVersion: GATEWAY_VERSION,
    snapshot: () => ({ uptimeMs: Date.now() - startedAt, sessionDefaults: context.sessionDefaults(), authMode: auth.mode, stateDir: config.stateDir }),
    limits: {
      handshakeTimeoutMs: gateway.handshakeTimeoutMs,
      tickIntervalMs: gateway.tickIntervalMs,
      maxPayloadBytes: gateway.maxPayloadBytes,
      preauthMaxBytes: gateway.preauthMaxBytes,
      maxConnections: gateway.maxConnections,
      maxUnauthenticatedConnections: gateway.maxUnauthenticatedConnections,
      maxInFlightRequests: gateway.maxInFlightRequests,
      ...options.limits,
    },
    log,
  };
}

/** Before anything new runs: stop what a crashed predecessor's runs left running (runners/orphans.ts). Never rejects. */
async function stopLeftovers(store: Store, log: (line: string) => void): Promise<void> {
  try {
    const { found, survivors } = await stopPreviousRuns(store.runProcessOwners(), DEFAULT_KILL_GRACE_MS);
    if (found > 0) log(`stopped ${found - survivors.length} process(es) that runs of a previous gateway left running`);
    if (survivors.length > 0) log(`${survivors.length} process(es) of a previous gateway's runs survived SIGKILL: ${survivors.join(", ")}`);
  } catch (error) {
    log(`could not look for processes of a previous gateway's runs: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** After ready, never blocking it: reclaim what a crash left behind. Never rejects. */
function scheduleStartupCollection(config: ResolvedConfig, collector: Collector, log: (line: string) => void): Promise<CollectorReport | undefined> {
  if (!config.workspace.gc.onStartup) return Promise.resolve(undefined);
  return new Promise<void>((resolve) => setImmediate(resolve))
    .then(() => collector.run())
    .catch((error: unknown) => {
      log(`start-up collection failed: ${error instanceof Error ? error.message : String(error)}`);
      return undefined;
    });
}

/**
 * Starts a gateway: state dir and store (runs a previous stop interrupted are marked as errors),
 * workspace providers (the ephemeral one registers this instance), runner, protocol server; then,
 * after it is ready and without blocking it, the start-up collector and its interval. If any step
 * fails, what was opened is closed again before the error is thrown.
 */
export async function startGateway(input: ResolvedConfig | GatewayConfigInput = {}, options: GatewayOptions = {}): Promise<GatewayHandle> {
  const config = isResolved(input) ? input : resolveConfig(input);
  const log = options.log ?? (() => undefined);
  const host = checkedBindHost(config);
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  const { auth, tokenFile, describe } = await resolveAuth(config);
  const store = openStore({ path: path.join(config.stateDir, "ocgw.sqlite"), log });
  const cleanups = createCleanupStack();
  cleanups.defer(() => store.close());
  try {
    const interrupted = store.failRunningRuns(Date.now(), "the gateway stopped during this run");
    if (interrupted > 0) log(`${interrupted} run(s) interrupted by the previous stop marked as error`);
    await stopLeftovers(store, log);
    const parts = await buildGatewayParts(config, store, { log, workspaceFs: options.workspaceFs, defer: cleanups.defer });
    const { ephemeral, collector } = parts;
    const protocol = await startProtocolServer(protocolOptions(config, host, auth, parts, options, log));
    parts.attach(protocol);
    log(`ocgw gateway listening on ${protocol.url} (${describe}; workspace.implicit=${config.workspace.implicit}, ephemeral root ${ephemeral.root})`);
    const startupCollection = scheduleStartupCollection(config, collector, log);
    collector.start(config.workspace.gc.intervalMs);
    const timeoutMs = options.shutdownTimeoutMs ?? 10_000;
    return {
      url: protocol.url,
      host: protocol.host,
      port: protocol.port,
      config,
      store,
      tokenFile,
      instanceId: ephemeral.instance.id,
      ephemeralRoot: ephemeral.root,
      startupCollection,
      collect: (collectOptions = {}) => collector.run({ dryRun: collectOptions.dryRun ?? false }),
      close: createShutdown({ ...parts, protocol, startupCollection, cleanups, timeoutMs, log }),
    };
  } catch (error) {
    await cleanups.unwind();
    throw error;
  }
}
