/**
 * Requests after the handshake: the typed method table, then for each request frame the in-flight
 * cap, the lookup, the scope check (before params are judged, so a caller without the scope
 * learns nothing about them), the credential check of methods that remove data, params validation, the handler, and exactly one final response (after any interim one).
 * Every refusal is a coded error response, never silence.
 */
import type { z } from "zod";
import { GatewayError, toWireError } from "../errors.ts";
import { formatIssues, isFailureReply, parseJson, requestFrameSchema } from "./frames.ts";
import type { RequestFrame } from "./frames.ts";
import type { Connection, Peer } from "./peer.ts";
import { hasScope, isScope } from "./scopes.ts";
import type { Scope } from "./scopes.ts";
import type { Sender } from "./sender.ts";
import { isThenable } from "../util/guards.ts";

export interface MethodContext {
  conn: Connection;
  requestId: string;
  /** Send an interim ok response with the same id (the `agent` method's {status:"accepted"} before its final result). */
  interim(payload: unknown): void;
  /**
   * Settles (never rejects) once the first response to this request, interim or final, has been
   * written to the socket, or could not be because the socket is gone. Work that emits events about
   * what the request started waits for it, so no such event can precede the response.
   */
  acked: Promise<void>;
  /** Aborted when the socket closes. */
  signal: AbortSignal;
}

export interface MethodSpec<P> {
  /**
   * The scope the caller needs, checked before the params are validated. A function gets the
   * validated params when they validate and otherwise the raw params (read them defensively);
   * if it throws or returns something that is not a scope, `operator.admin` is required.
   */
  scope: Scope | ((params: P) => Scope);
  /**
   * The method removes data (a session, a transcript, a workspace): refused with
   * CREDENTIAL_REQUIRED to a connection that presented no credential, whatever its scopes.
   */
  removesData?: boolean;
  /** Parsed synchronously: a schema with async refinements is not allowed. */
  params: z.ZodType<P>;
  /**
   * The result, or a promise of it. A handler that returns a plain value (`chat.send`, `agent`'s
   * accept) has its response written before the next frame of the same read is handled.
   */
  handler(params: P, ctx: MethodContext): unknown;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a table mixes specs of different param types
export type MethodTable = Record<string, MethodSpec<any>>;

/** Type helper: infers `P` from the params schema. */
export function defineMethod<P>(spec: MethodSpec<P>): MethodSpec<P> {
  return spec;
}

export interface DispatchDeps {
  methods: MethodTable;
  sender: Sender;
  /** True once the server is closing: new requests get GATEWAY_CLOSING (retryable). */
  isClosing(): boolean;
  /** Requests one peer may have unanswered; one more gets TOO_MANY_REQUESTS. */
  maxInFlightRequests: number;
  log: (line: string) => void;
}

/** Handles one text frame from an open connection. */
export type RequestHandler = (peer: Peer, conn: Connection, text: string) => void;

function requiredScope(spec: MethodTable[string], params: unknown): Scope {
  if (typeof spec.scope !== "function") return spec.scope;
  try {
    const scope: unknown = spec.scope(params);
    return isScope(scope) ? scope : "operator.admin";
  } catch {
    return "operator.admin";
  }
}

/** The error for a frame that is not a valid request, or undefined when it has no id to answer. */
function malformedFrameError(json: unknown, issues: z.ZodError["issues"]): { id: string; error: GatewayError } | undefined {
  const id = typeof json === "object" && json !== null && "id" in json ? json.id : undefined;
  if (typeof id !== "string" || id === "") return undefined;
  const detail = formatIssues(issues, json);
  return { id, error: new GatewayError("INVALID_PARAMS", `invalid request frame: ${detail}`, { fix: null }) };
}

function missingScopeError(scope: Scope): GatewayError {
  return new GatewayError("MISSING_SCOPE", `missing scope: ${scope}`, { fix: null, details: { missingScope: scope, requiredScopes: [scope] } });
}

/** A handler's {@link MethodContext}, plus the two transitions the dispatcher drives. */
function methodContext(sender: Sender, peer: Peer, conn: Connection, id: string): { ctx: MethodContext; finish(): void; markAcked(): void } {
  let finished = false;
  let markAcked: () => void = () => undefined;
  const acked = new Promise<void>((resolve) => {
    markAcked = resolve;
  });
  const ctx: MethodContext = {
    conn,
    requestId: id,
    interim(payload: unknown): void {
      if (finished) return;
      sender.respond(peer, id, true, payload);
      markAcked();
    },
    acked,
    signal: peer.abort.signal,
  };
  return { ctx, finish: () => void (finished = true), markAcked: () => markAcked() };
}

/**
 * Runs the handler and sends its final response: at once when it returns a value, when it settles
 * when it returns a promise. `acked` settles once a response went out (or could not).
 */
function run(deps: DispatchDeps, peer: Peer, conn: Connection, spec: MethodTable[string], frame: RequestFrame, params: unknown): Promise<void> | undefined {
  const { id, method } = frame;
  const { sender, log } = deps;
  const call = methodContext(sender, peer, conn, id);
  const succeed = (result: unknown): void => {
    call.finish();
    if (isFailureReply(result)) sender.respond(peer, id, false, result.payload, toWireError(result.error));
    else sender.respond(peer, id, true, result);
    call.markAcked();
  };
  const fail = (error: unknown): void => {
    call.finish();
    if (!(error instanceof GatewayError)) log(`gateway method ${method} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    sender.respondError(peer, id, error);
    call.markAcked();
  };
  let result: unknown;
  try {
    result = spec.handler(params, call.ctx);
  } catch (error) {
    fail(error);
    return undefined;
  }
  if (!isThenable(result)) {
    succeed(result);
    return undefined;
  }
  return Promise.resolve(result).then(succeed, fail);
}

/** Lookup, scope, params (in that order), then {@link run}; synchronous up to the handler. */
function dispatch(deps: DispatchDeps, peer: Peer, conn: Connection, frame: RequestFrame): Promise<void> | undefined {
  const { id, method } = frame;
  const { methods, sender } = deps;
  const spec = Object.hasOwn(methods, method) ? methods[method] : undefined;
  if (spec === undefined) {
    sender.respondError(peer, id, new GatewayError("UNKNOWN_METHOD", `unknown method: ${method}`, { fix: null }));
    return undefined;
  }
  const raw = frame.params ?? {};
  const parsed = spec.params.safeParse(raw);
  const scope = requiredScope(spec, parsed.success ? parsed.data : raw);
  if (!hasScope(conn.scopes, scope)) {
    sender.respondError(peer, id, missingScopeError(scope));
    return undefined;
  }
  if (spec.removesData === true && conn.credential === "none") {
    sender.respondError(peer, id, new GatewayError("CREDENTIAL_REQUIRED", `${method} removes data and this connection presented no credential`, { details: { method } }));
    return undefined;
  }
  if (!parsed.success) {
    const text = formatIssues(parsed.error.issues, raw);
    sender.respondError(peer, id, new GatewayError("INVALID_PARAMS", `invalid ${method} params: ${text}`, { fix: null }));
    return undefined;
  }
  return run(deps, peer, conn, spec, frame, parsed.data);
}

/** A frame from an open connection: malformed, a second `connect`, or during close → a coded error; else {@link dispatch}. */
function handleRequestFrame(deps: DispatchDeps, peer: Peer, conn: Connection, text: string): void {
  const { sender, log } = deps;
  const json = parseJson(text);
  const frame = requestFrameSchema.safeParse(json);
  if (!frame.success) {
    const malformed = malformedFrameError(json, frame.error.issues);
    if (malformed !== undefined) sender.respondError(peer, malformed.id, malformed.error);
    else log(`gateway ws conn=${conn.connId}: ignoring a frame that is not a request`);
    return;
  }
  const { id, method } = frame.data;
  if (method === "connect") {
    sender.respondError(peer, id, new GatewayError("INVALID_HANDSHAKE", "already connected", { fix: null }));
    return;
  }
  if (deps.isClosing()) {
    sender.respondError(peer, id, new GatewayError("GATEWAY_CLOSING", "gateway is shutting down", { retryable: true }));
    return;
  }
  if (peer.inFlight >= deps.maxInFlightRequests) {
    const detail = `${peer.inFlight} requests of this connection are unanswered (gateway.maxInFlightRequests is ${deps.maxInFlightRequests})`;
    sender.respondError(peer, id, new GatewayError("TOO_MANY_REQUESTS", detail, { retryable: true }));
    return;
  }
  peer.inFlight += 1;
  let pending: Promise<void> | undefined;
  try {
    pending = dispatch(deps, peer, conn, frame.data);
  } catch (error) {
    dispatchFailed(deps, peer, frame.data, error);
  }
  if (pending === undefined) {
    peer.inFlight -= 1;
    return;
  }
  pending.catch((error: unknown) => dispatchFailed(deps, peer, frame.data, error)).finally(() => (peer.inFlight -= 1));
}

function dispatchFailed(deps: DispatchDeps, peer: Peer, frame: RequestFrame, error: unknown): void {
  deps.log(`gateway dispatch of ${frame.method} failed: ${(error as Error).message}`);
  deps.sender.respondError(peer, frame.id, error);
}

/** The handler of every frame after the handshake. */
export function createDispatcher(deps: DispatchDeps): RequestHandler {
  return (peer, conn, text) => handleRequestFrame(deps, peer, conn, text);
}
