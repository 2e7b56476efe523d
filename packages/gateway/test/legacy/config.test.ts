import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { openClawHost, readOpenClawConfig, resolveConfigPath } from "../../src/legacy/openclaw-config.ts";
import { resolveRoster } from "../../src/legacy/roster.ts";
import { type OpenClawFixture, tempOpenClaw, writeConfig } from "./openclaw-fixture.ts";

async function roster(fx: OpenClawFixture, env: NodeJS.ProcessEnv = fx.env, agentDirs: string[] = []) {
  const host = openClawHost(env, fx.base, fx.home);
  const configPath = await resolveConfigPath(fx.stateDir, host);
  const document = await readOpenClawConfig(configPath, host);
  return resolveRoster({ stateDir: fx.stateDir, configPath, document, host, agentDirs });
}

const workspaces = async (fx: OpenClawFixture, env?: NodeJS.ProcessEnv) => Object.fromEntries((await roster(fx, env)).map((agent) => [agent.id, agent.workspace]));

describe("reading OpenClaw's config", () => {
  it("both roster forms resolve as OpenClaw 2026.9 does; entries wins over list", async () => {
    const fx = await tempOpenClaw();
    await writeConfig(fx, `{ agents: { entries: { main: {}, ops: {} } } }`);
    // Several entries and none marked default: nobody gets <stateDir>/workspace.
    expect(await workspaces(fx)).toEqual({ main: path.join(fx.stateDir, "workspace-main"), ops: path.join(fx.stateDir, "workspace-ops") });
    await writeConfig(fx, `{ agents: { list: [{ id: "ops" }, { id: "main" }] } }`);
    // The list form pins its first entry to the default workspace (the scanned dir is OpenClaw's OPENCLAW_STATE_DIR).
    expect(await workspaces(fx)).toEqual({ ops: path.join(fx.stateDir, "workspace"), main: path.join(fx.stateDir, "workspace-main") });
    await writeConfig(fx, `{ agents: { list: [{ id: "x" }], entries: { y: { default: true, workspace: "~/y" } } } }`);
    expect(await workspaces(fx)).toEqual({ y: path.join(fx.home, "y") });
    await writeConfig(fx, `{}`);
    expect(await workspaces(fx)).toEqual({ main: path.join(fx.stateDir, "workspace") });
    expect(await workspaces(fx, { ...fx.env, OPENCLAW_WORKSPACE_DIR: "~/ws" })).toEqual({ main: path.join(fx.home, "ws") });
  });

  it("every workspace an agent could resolve to is protected, not just the first rule's", async () => {
    const fx = await tempOpenClaw();
    await writeConfig(fx, `{ agents: { defaults: { workspace: "~/team" }, entries: { main: { default: true }, writer: { workspace: "rel/dir" } } } }`);
    const agents = await roster(fx, { ...fx.env, OPENCLAW_WORKSPACE_DIR: "/srv/main-ws" });
    const writer = agents.find((agent) => agent.id === "writer");
    expect(writer?.workspace).toBe(path.join(fx.base, "rel", "dir"));
    expect(writer?.workspaces).toEqual(expect.arrayContaining([path.join(fx.stateDir, "rel", "dir"), path.join(fx.home, "team", "writer"), path.join(fx.stateDir, "workspace-writer"), "/srv/main-ws"]));
  });

  it("$include: nested, lists merged in order with arrays concatenated, relative to the including file", async () => {
    const fx = await tempOpenClaw();
    await fs.mkdir(path.join(fx.stateDir, "conf", "deeper"), { recursive: true });
    await fs.writeFile(path.join(fx.stateDir, "conf", "agents.json5"), `{ entries: { ops: {} }, $include: "./deeper/more.json5" }`);
    await fs.writeFile(path.join(fx.stateDir, "conf", "deeper", "more.json5"), `{ entries: { qa: { workspace: "/srv/qa" } } }`);
    await fs.writeFile(path.join(fx.stateDir, "conf", "a.json5"), `{ tags: ["a"] }`);
    await fs.writeFile(path.join(fx.stateDir, "conf", "b.json5"), `{ tags: ["b"] }`);
    await writeConfig(fx, `{ $include: ["./conf/a.json5", "./conf/b.json5"], agents: { $include: "./conf/agents.json5", entries: { main: { default: true } } } }`);
    const host = openClawHost(fx.env, fx.base, fx.home);
    const document = await readOpenClawConfig(path.join(fx.stateDir, "openclaw.json"), host);
    expect(document?.["tags"]).toEqual(["a", "b"]);
    expect(await workspaces(fx)).toEqual({ ops: path.join(fx.stateDir, "workspace-ops"), qa: "/srv/qa", main: path.join(fx.stateDir, "workspace") });
  });

  it("$include outside the config directory, circular, or missing stops with a clear error; OPENCLAW_INCLUDE_ROOTS allows more", async () => {
    const fx = await tempOpenClaw();
    await fs.writeFile(path.join(fx.base, "outside.json5"), `{ entries: { far: {} } }`);
    await writeConfig(fx, `{ agents: { $include: "../outside.json5" } }`);
    await expect(roster(fx)).rejects.toMatchObject({ code: "LEGACY_UNREADABLE", message: expect.stringContaining("outside the config directory") });
    expect((await roster(fx, { ...fx.env, OPENCLAW_INCLUDE_ROOTS: fx.base })).map((agent) => agent.id)).toEqual(["far"]);
    await writeConfig(fx, `{ $include: "./loop.json5" }`);
    await fs.writeFile(path.join(fx.stateDir, "loop.json5"), `{ $include: "./openclaw.json" }`);
    await expect(roster(fx)).rejects.toMatchObject({ message: expect.stringContaining("circular $include") });
    await writeConfig(fx, `{ $include: "./nope.json5" }`);
    await expect(roster(fx)).rejects.toMatchObject({ code: "LEGACY_UNREADABLE", message: expect.stringContaining('cannot read $include "./nope.json5" (ENOENT)') });
  });

  it("OPENCLAW_CONFIG_PATH is read instead of <stateDir>/openclaw.json; ${VAR} resolves from the env and the config's env block", async () => {
    const fx = await tempOpenClaw();
    const other = path.join(fx.base, "elsewhere.json5");
    await fs.writeFile(other, `{ env: { vars: { TEAM: "/srv/team" } }, agents: { entries: { a: { workspace: "\${TEAM}/a" }, b: { workspace: "\${HOMEBASE}/b" }, c: { workspace: "$\${LITERAL}" } } } }`);
    const env = { ...fx.env, OPENCLAW_CONFIG_PATH: other, HOMEBASE: "/home/base" };
    expect(await workspaces(fx, env)).toEqual({ a: "/srv/team/a", b: "/home/base/b", c: path.join(fx.base, "${LITERAL}") });
    await fs.writeFile(other, `{ agents: { entries: { a: { workspace: "\${UNSET_HERE}/a" } } } }`);
    await expect(roster(fx, env)).rejects.toMatchObject({ code: "LEGACY_UNSUPPORTED", message: expect.stringContaining("${UNSET_HERE}") });
  });

  it.each([
    ["an unknown sandbox mode", `{ agents: { defaults: { sandbox: { mode: "sometimes" } } } }`, "agents.defaults.sandbox.mode"],
    ["a custom session.store", `{ session: { store: "/srv/sessions.json" } }`, "session.store"],
    ["a workspace that is not a string", `{ agents: { entries: { a: { workspace: 42 } } } }`, "agents.entries.a.workspace"],
    ["agents.list that is not an array", `{ agents: { list: { main: {} } } }`, "agents.list"],
    ["an agents.list entry without an id", `{ agents: { list: [{ workspace: "/x" }] } }`, "agents.list.0.id"],
  ])("%s stops the scan (LEGACY_UNSUPPORTED, naming the key)", async (_what, text, key) => {
    const fx = await tempOpenClaw();
    await writeConfig(fx, text);
    await expect(roster(fx)).rejects.toMatchObject({ code: "LEGACY_UNSUPPORTED", message: expect.stringContaining(key) });
  });

  it("sandbox settings: the agent's own over the defaults, legacy perSession, workspaceRoot with ~", async () => {
    const fx = await tempOpenClaw();
    await writeConfig(fx, `{ agents: { defaults: { sandbox: { mode: "non-main", perSession: true } }, entries: { main: {}, box: { sandbox: { scope: "agent", workspaceRoot: "~/boxes" } } } } }`);
    const agents = await roster(fx);
    expect(agents.map((agent) => [agent.id, agent.sandbox])).toEqual([
      ["main", { mode: "non-main", scope: "session", workspaceRoot: path.join(fx.stateDir, "sandboxes") }],
      ["box", { mode: "non-main", scope: "agent", workspaceRoot: path.join(fx.home, "boxes") }],
    ]);
  });
});
