export { defineMethod, startProtocolServer, DEFAULT_LIMITS } from "./server.ts";
export type {
  BroadcastOptions,
  Connection,
  MethodContext,
  MethodSpec,
  MethodTable,
  ProtocolLimits,
  ProtocolServer,
  ProtocolServerOptions,
} from "./server.ts";
export { PROTOCOL_VERSION, failureReply, formatIssues, jsonPointer } from "./frames.ts";
export type { ConnectParams, EventFrame, FailureReply, RequestFrame, ResponseFrame } from "./frames.ts";
export { DEFAULT_SCOPES, OPERATOR_SCOPES, defaultEventScope, hasScope, isScope } from "./scopes.ts";
export type { Scope } from "./scopes.ts";
