import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { PLUGIN_DEFAULTS, PLUGIN_ID, parsePluginConfig, pluginConfigJsonSchema } from "../src/index.ts";

const manifest = JSON.parse(await readFile(new URL("../openclaw.plugin.json", import.meta.url), "utf8")) as Record<string, unknown>;
const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8")) as { openclaw?: { extensions?: string[] }; files?: string[] };

describe("the plugin's manifest and config", () => {
  it("openclaw.plugin.json declares the plugin's id and exactly the zod schema as its configSchema", () => {
    expect(manifest["id"]).toBe(PLUGIN_ID);
    expect(manifest["configSchema"]).toEqual(pluginConfigJsonSchema());
    expect(manifest["activation"]).toEqual({ onStartup: true });
    expect(pkg.openclaw?.extensions).toEqual(["./dist/index.js"]);
    expect(pkg.files).toEqual(["dist", "openclaw.plugin.json"]);
  });

  it("an absent config is all defaults", () => {
    expect(parsePluginConfig(undefined)).toEqual({ ...PLUGIN_DEFAULTS, sweeper: { ...PLUGIN_DEFAULTS.sweeper } });
    expect(parsePluginConfig({ sweeper: { idleDays: 7 } }).sweeper).toEqual({ ...PLUGIN_DEFAULTS.sweeper, idleDays: 7 });
  });

  it("rejects unknown keys and bad values, naming each path", () => {
    expect(() => parsePluginConfig({ sweeper: { intervalMinutes: 0, every: 5 }, dryRun: "yes" })).toThrow(/sweeper\.intervalMinutes: Too small.*; sweeper: Unrecognized key: "every"; dryRun: /);
    expect(() => parsePluginConfig({ sweeper: { maxPerPass: 1.5 } })).toThrow(/sweeper\.maxPerPass/);
    expect(() => parsePluginConfig([])).toThrow(/\(root\)/);
  });
});
