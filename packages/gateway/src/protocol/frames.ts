/**
 * Wire frames of the OpenClaw gateway protocol v4 and the zod schemas that guard the boundary.
 * Requests are parsed leniently (unknown top-level fields are tolerated); responses and events are
 * built here so every frame leaves the server in the same shape.
 */
import { z } from "zod";
import type { GatewayError, WireError } from "../errors.ts";
import { isRecord } from "../util/guards.ts";

export const PROTOCOL_VERSION = 4;

/** `{type:"req", id, method, params?}`; other top-level fields (traceparent, …) are ignored. */
export const requestFrameSchema = z.looseObject({
  type: z.literal("req"),
  id: z.string().min(1),
  method: z.string().min(1),
  params: z.unknown().optional(),
});
export type RequestFrame = z.infer<typeof requestFrameSchema>;

export interface ResponseFrame {
  type: "res";
  id: string;
  ok: boolean;
  payload?: unknown;
  error?: WireError;
}

export interface EventFrame {
  type: "event";
  event: string;
  payload?: unknown;
  /** Per-connection counter from 1; absent on `connect.challenge`. */
  seq?: number;
}

/**
 * `connect` params: strict about the types a server relies on, lenient about everything else
 * (any client id or mode, unknown fields, a `device` block that is accepted and ignored).
 */
export const connectParamsSchema = z.looseObject({
  minProtocol: z.int().min(1),
  maxProtocol: z.int().min(1),
  client: z.looseObject({
    id: z.string().min(1),
    mode: z.string().min(1),
    version: z.string().optional(),
    platform: z.string().optional(),
  }),
  role: z.string().optional(),
  scopes: z.array(z.string()).optional(),
  caps: z.array(z.string()).optional(),
  auth: z
    .looseObject({
      token: z.string().optional(),
      password: z.string().optional(),
      deviceToken: z.string().optional(),
      bootstrapToken: z.string().optional(),
    })
    .optional(),
  device: z.unknown().optional(),
});
export type ConnectParams = z.infer<typeof connectParamsSchema>;

/** Parses one text frame; `undefined` when it is not JSON. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Serialises a response; throws only when `payload` cannot be serialised (cycles, BigInt). */
export function encodeResponse(id: string, ok: boolean, payload?: unknown, error?: WireError): string {
  const frame: ResponseFrame = { type: "res", id, ok };
  if (payload !== undefined) frame.payload = payload;
  if (error !== undefined) frame.error = error;
  return JSON.stringify(frame);
}

/**
 * An event frame around an already serialised payload, so a broadcast serialises its payload once
 * and only the seq differs per connection.
 */
export function encodeEvent(event: string, payloadJson: string | undefined, seq: number | undefined): string {
  let text = `{"type":"event","event":${JSON.stringify(event)}`;
  if (payloadJson !== undefined) text += `,"payload":${payloadJson}`;
  if (seq !== undefined) text += `,"seq":${seq}`;
  return `${text}}`;
}

// ---------------------------------------------------------------------------------------------
// Validation messages in upstream's (ajv) phrasing.

function escapePointerSegment(segment: PropertyKey): string {
  return String(segment).replaceAll("~", "~0").replaceAll("/", "~1");
}

/** JSON pointer of a path: `""` for the root, else `/a/0/b`. */
export function jsonPointer(path: readonly PropertyKey[]): string {
  return path.map((segment) => `/${escapePointerSegment(segment)}`).join("");
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let current = input;
  for (const segment of path) {
    if (Array.isArray(current) && typeof segment === "number") current = current[segment];
    else if (isRecord(current) && typeof segment === "string" && Object.hasOwn(current, segment)) current = current[segment];
    else return undefined;
  }
  return current;
}

type Issue = z.ZodError["issues"][number];

function formatIssue(issue: Issue, input: unknown): string {
  const path = issue.path;
  const last = path.at(-1);
  if (issue.code === "invalid_type" && typeof last === "string") {
    const parentPath = path.slice(0, -1);
    const parent = valueAt(input, parentPath);
    if (isRecord(parent) && !Object.hasOwn(parent, last)) {
      const where = jsonPointer(parentPath);
      const text = `must have required property '${last}'`;
      return where === "" ? text : `at ${where}: ${text}`;
    }
  }
  const where = jsonPointer(path);
  return where === "" ? issue.message : `at ${where}: ${issue.message}`;
}

/**
 * Validator text for `invalid <method> params: <text>`: a missing field reads
 * `must have required property 'name'` (as upstream's ajv says it), anything else
 * `at /json/pointer: <zod message>`; several issues are joined with `; `.
 */
export function formatIssues(issues: readonly Issue[], input: unknown): string {
  if (issues.length === 0) return "invalid value";
  return issues.map((issue) => formatIssue(issue, input)).join("; ");
}

// ---------------------------------------------------------------------------------------------
// ok:false with a payload.

const failureBrand: unique symbol = Symbol("ocgw.protocol.failureReply");

/** What a handler returns to answer `ok:false` with both a payload and an error. */
export interface FailureReply {
  readonly [failureBrand]: true;
  readonly payload: unknown;
  readonly error: GatewayError;
}

/** A handler may return this to answer ok:false WITH a payload (upstream does this, e.g. a cached failed run). */
export function failureReply(payload: unknown, error: GatewayError): FailureReply {
  return { [failureBrand]: true, payload, error };
}

export function isFailureReply(value: unknown): value is FailureReply {
  return typeof value === "object" && value !== null && failureBrand in value;
}
