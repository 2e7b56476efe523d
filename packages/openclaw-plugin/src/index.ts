/**
 * `@ocgw/openclaw-plugin`: a native OpenClaw plugin (id `ocgw-reclaim`) that stops the per-session
 * sandbox workspace leak inside a running OpenClaw. On `session_end` with reason `deleted` it
 * releases that session's sandbox directory; a sweeper service reclaims, at start and on an
 * interval, those whose session went any other way. Both remove a directory only under the proof
 * of ocgw's legacy reclaim (`@ocgw/gateway/legacy`). See docs/openclaw-plugin.md.
 */
import { PLUGIN_ID, registerReclaim } from "./plugin.ts";

export { PLUGIN_DEFAULTS, parsePluginConfig, pluginConfigJsonSchema, pluginConfigSchema, type PluginConfig } from "./config.ts";
export { TESTED_OPENCLAW_VERSIONS } from "./compat.ts";
export type { PluginApi, PluginLogger, PluginService, ServiceContext, SessionEndEvent, SessionHookContext } from "./host.ts";
export { PLUGIN_ID, registerReclaim } from "./plugin.ts";

/** The plugin entry OpenClaw loads (the shape `definePluginEntry` returns). */
const plugin = {
  id: PLUGIN_ID,
  name: "ocgw sandbox workspace reclaim",
  description: "Removes the per-session sandbox workspaces of deleted sessions, and sweeps those whose session is gone, when OpenClaw's own state proves them orphaned.",
  register: registerReclaim,
};

export default plugin;
