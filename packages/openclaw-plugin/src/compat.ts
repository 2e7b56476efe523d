import { KNOWN_SEEDS } from "@ocgw/gateway/legacy";
import type { PluginLogger } from "./host.ts";

/**
 * Whether this OpenClaw is one whose sandbox naming rule and session store format the proof was
 * verified against. The releases are those the legacy reclaim's seed hashes were taken from (one
 * list, `KNOWN_SEEDS.versions`). On any other release deletions are disabled — said once, loudly —
 * unless the operator set `allowUntestedOpenClaw`. Problems met later (a store in an unknown
 * format, a config shape the proof does not understand) are said once each, at error level.
 */
export interface CompatGuard {
  /** False: plan and log only, remove nothing. */
  readonly deletionsAllowed: boolean;
  /** Logs `problem` at error level the first time it is met (the proof already keeps what it cannot prove). */
  problem(problem: string): void;
}

export interface CompatOptions {
  /** `api.runtime.version`: OpenClaw's release, e.g. `2026.9.6`. */
  readonly version: unknown;
  readonly allowUntested: boolean;
  readonly logger: PluginLogger;
  /** Default `KNOWN_SEEDS.versions`. */
  readonly tested?: readonly string[] | undefined;
}

export const TESTED_OPENCLAW_VERSIONS: readonly string[] = KNOWN_SEEDS.versions;

export function createCompatGuard(options: CompatOptions): CompatGuard {
  const tested = options.tested ?? TESTED_OPENCLAW_VERSIONS;
  const version = typeof options.version === "string" && options.version.trim() !== "" ? options.version.trim() : "(unknown version)";
  const known = tested.includes(version);
  const said = new Set<string>();
  if (!known && options.allowUntested) {
    options.logger.warn(`ocgw-reclaim: OpenClaw ${version} is not a release this plugin was tested with (${tested.join(", ")}); acting anyway because allowUntestedOpenClaw is set`);
  } else if (!known) {
    options.logger.error(`ocgw-reclaim: DELETIONS DISABLED. OpenClaw ${version} is not a release this plugin was tested with (${tested.join(", ")}): its sandbox naming rule and session store format are unverified here, so nothing will be removed; the plan is still logged. Upgrade @ocgw/openclaw-plugin, or set allowUntestedOpenClaw: true after checking the plan.`);
  }
  return {
    deletionsAllowed: known || options.allowUntested,
    problem(problem: string): void {
      if (said.has(problem)) return;
      said.add(problem);
      options.logger.error(`ocgw-reclaim: ${problem}`);
    },
  };
}
