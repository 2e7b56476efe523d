/**
 * The configuration of @ocgw/gateway: one strict schema, one defaults table, validated once at
 * start-up (flags > env > file > defaults) and deep-frozen.
 */
export { CONFIG_DEFAULTS, DEFAULT_AGENT_ID, DEFAULT_CONFIG_FILE, type DeepReadonly } from "./defaults.ts";
export {
  AGENT_ID_PATTERN,
  IMPLICIT_WORKSPACE_MODES,
  MAX_TIMER_MS,
  RUNNER_KINDS,
  configSchema,
  type GatewayConfig,
  type GatewayConfigInput,
} from "./schema.ts";
export { CONFIG_ENV_VARS, loadConfig, resolveConfig, type ConfigFlags, type LoadConfigOptions, type ResolveContext, type ResolvedConfig } from "./load.ts";
export { formatPath, type ConfigIssue } from "./issues.ts";
export { LAN_HOST, LOOPBACK_HOST, bindHost, isLoopbackBind, isValidBind } from "./bind.ts";
