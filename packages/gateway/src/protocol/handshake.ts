/**
 * The `connect` request: params, protocol range, shared-secret auth and granted scopes.
 * Pure functions; the server sends the reply and closes the socket.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { GatewayError } from "../errors.ts";
import { PROTOCOL_VERSION, connectParamsSchema, formatIssues } from "./frames.ts";
import { DEFAULT_SCOPES } from "./scopes.ts";

/** WebSocket close codes the gateway uses (upstream §1.4). */
export const CLOSE_NORMAL = 1000;
export const CLOSE_PROTOCOL_ERROR = 1002;
export const CLOSE_POLICY_VIOLATION = 1008;
export const CLOSE_TOO_BIG = 1009;
export const CLOSE_INTERNAL_ERROR = 1011;
export const CLOSE_SERVICE_RESTART = 1012;

export interface AcceptedConnect {
  kind: "accepted";
  scopes: Set<string>;
  client: { id: string; mode: string; version?: string };
  caps: Set<string>;
}

export interface RejectedConnect {
  kind: "rejected";
  error: GatewayError;
  closeCode: number;
}

export const TOKEN_MISMATCH_MESSAGE = "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)";
export const TOKEN_MISSING_MESSAGE = "unauthorized: gateway token missing (set gateway.remote.token to match gateway.auth.token)";

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/** Constant-time comparison of two secrets of any length (both are hashed first). */
export function secretsEqual(given: string, expected: string): boolean {
  return timingSafeEqual(sha256(given), sha256(expected));
}

/** A close reason may hold at most 123 bytes of UTF-8; cut on a character boundary. */
export function truncateCloseReason(reason: string): string {
  if (Buffer.byteLength(reason, "utf8") <= 123) return reason;
  let out = "";
  let bytes = 0;
  for (const char of reason) {
    const size = Buffer.byteLength(char, "utf8");
    if (bytes + size > 123) break;
    out += char;
    bytes += size;
  }
  return out;
}

function reject(error: GatewayError, closeCode: number): RejectedConnect {
  return { kind: "rejected", error, closeCode };
}

/** Checks a connect request's params against the protocol version and the shared secret. */
export function evaluateConnect(rawParams: unknown, token: string | undefined): AcceptedConnect | RejectedConnect {
  const parsed = connectParamsSchema.safeParse(rawParams);
  if (!parsed.success) {
    const text = formatIssues(parsed.error.issues, rawParams);
    return reject(new GatewayError("INVALID_HANDSHAKE", `invalid connect params: ${text}`, { fix: null }), CLOSE_POLICY_VIOLATION);
  }
  const params = parsed.data;

  if (params.minProtocol > PROTOCOL_VERSION || params.maxProtocol < PROTOCOL_VERSION) {
    return reject(
      new GatewayError("PROTOCOL_MISMATCH", "protocol mismatch", {
        fix: null,
        details: { clientMinProtocol: params.minProtocol, clientMaxProtocol: params.maxProtocol, expectedProtocol: PROTOCOL_VERSION },
      }),
      CLOSE_PROTOCOL_ERROR,
    );
  }

  if (token !== undefined) {
    const offered = [params.auth?.token, params.auth?.password].filter((value): value is string => typeof value === "string" && value !== "");
    if (offered.length === 0) {
      return reject(
        new GatewayError("AUTH_FAILED", TOKEN_MISSING_MESSAGE, {
          fix: null,
          details: { code: "AUTH_TOKEN_MISSING", authReason: "token_missing", canRetryWithDeviceToken: false, recommendedNextStep: "update_auth_configuration" },
        }),
        CLOSE_POLICY_VIOLATION,
      );
    }
    // Compare every offered secret (no early exit) so timing does not tell which field matched.
    const matches = offered.map((secret) => secretsEqual(secret, token));
    if (!matches.includes(true)) {
      return reject(
        new GatewayError("AUTH_FAILED", TOKEN_MISMATCH_MESSAGE, {
          fix: null,
          details: { code: "AUTH_TOKEN_MISMATCH", authReason: "token_mismatch", canRetryWithDeviceToken: false, recommendedNextStep: "update_auth_credentials" },
        }),
        CLOSE_POLICY_VIOLATION,
      );
    }
  }

  const client: AcceptedConnect["client"] = { id: params.client.id, mode: params.client.mode };
  if (params.client.version !== undefined) client.version = params.client.version;
  return {
    kind: "accepted",
    scopes: new Set(params.scopes ?? DEFAULT_SCOPES),
    client,
    caps: new Set(params.caps ?? []),
  };
}
