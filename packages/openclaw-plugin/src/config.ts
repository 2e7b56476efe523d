import { z } from "zod";

/**
 * The plugin's config, `plugins.entries.ocgw-reclaim.config` in openclaw.json: one strict zod
 * schema with defaults; `openclaw.plugin.json`'s `configSchema` is the same schema as JSON Schema
 * (a test keeps the two equal), so OpenClaw rejects a bad config before the plugin loads.
 */

export const PLUGIN_DEFAULTS = {
  /** Release a session's sandbox workspace when the session is deleted (`session_end`, reason `deleted`). */
  onDelete: { enabled: true },
  sweeper: {
    enabled: true,
    /** Between passes, in minutes (10 min). The first pass runs right after the gateway starts. */
    intervalMinutes: 10,
    /** Directories decided per pass, at most (the next pass goes on where this one stopped). */
    maxPerPass: 200,
    /** A directory changed more recently than this many minutes is kept (60 min): it may be one OpenClaw is creating. */
    minAgeMinutes: 60,
  },
  /** Log the plan, remove nothing. */
  dryRun: false,
  /** Also reclaim an orphan holding files OpenClaw did not write (an agent's or a person's). Off: such a directory is kept and logged. */
  reclaimWorkProducts: false,
  /** Act on an OpenClaw release the plugin was not tested with. Off: deletions are disabled there, and the plugin says so. */
  allowUntestedOpenClaw: false,
} as const;

const minutes = z.number().positive().max(7 * 24 * 60);

export const pluginConfigSchema = z.strictObject({
  onDelete: z.strictObject({ enabled: z.boolean().default(PLUGIN_DEFAULTS.onDelete.enabled) }).prefault({}),
  sweeper: z
    .strictObject({
      enabled: z.boolean().default(PLUGIN_DEFAULTS.sweeper.enabled),
      intervalMinutes: minutes.default(PLUGIN_DEFAULTS.sweeper.intervalMinutes),
      maxPerPass: z.int().min(1).max(100_000).default(PLUGIN_DEFAULTS.sweeper.maxPerPass),
      minAgeMinutes: z.number().min(0).max(7 * 24 * 60).default(PLUGIN_DEFAULTS.sweeper.minAgeMinutes),
      /** Also reclaim the sandbox workspace of a session idle longer than this many days (like upstream's container pruning). Default: off. */
      idleDays: z.number().positive().max(3650).optional(),
    })
    .prefault({}),
  dryRun: z.boolean().default(PLUGIN_DEFAULTS.dryRun),
  reclaimWorkProducts: z.boolean().default(PLUGIN_DEFAULTS.reclaimWorkProducts),
  allowUntestedOpenClaw: z.boolean().default(PLUGIN_DEFAULTS.allowUntestedOpenClaw),
});

export type PluginConfig = Readonly<z.output<typeof pluginConfigSchema>>;

/** Parses `api.pluginConfig` (absent = all defaults); throws an Error naming each bad key's path. */
export function parsePluginConfig(raw: unknown): PluginConfig {
  const parsed = pluginConfigSchema.safeParse(raw ?? {});
  if (parsed.success) return Object.freeze(parsed.data);
  const issues = parsed.error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`);
  throw new Error(`invalid plugins.entries.ocgw-reclaim.config: ${issues.join("; ")}`);
}

/** The config's JSON Schema (draft-07, no `$schema` key), as `openclaw.plugin.json` declares it. */
export function pluginConfigJsonSchema(): Record<string, unknown> {
  const { $schema: _draft, ...schema } = z.toJSONSchema(pluginConfigSchema, { io: "input", target: "draft-07" }) as Record<string, unknown>;
  return schema;
}
