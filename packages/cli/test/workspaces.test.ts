import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { GcSummary, WorkspaceInventory } from "@ocgw/gateway";
import { describe, expect, it } from "vitest";
import { TOKEN, closedPort, leaseDirs, runCli, spawnGateway, startTestGateway, tempDir } from "./helpers.ts";

function inventory(stdout: string): WorkspaceInventory {
  return JSON.parse(stdout) as WorkspaceInventory;
}

describe("ocgw workspaces ls", () => {
  it("--url lists the running gateway's workspaces: live while a run is active, idle after, released history", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    await runCli(["chat", "one", "--session", "ws-one", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    await runCli(["chat", "two", "--session", "ws-two", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    await runCli(["call", "sessions.delete", "--params", '{"key":"ws-two"}', "--url", gateway.url, "--token", TOKEN], { env: t.env });
    // A run in flight: its session's workspace is live, not idle.
    const slow = runCli(["chat", "/echo:sleep 60000 x", "--session", "ws-busy", "--timeout", "30000", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    await waitForLive(gateway.url, "agent:main:ws-busy", t.env);

    const result = await runCli(["workspaces", "ls", "--json", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(result.code).toBe(0);
    const inv = inventory(result.stdout);
    expect(inv.source).toBe("gateway");
    const bySession = new Map(inv.rows.map((row) => [`${row.sessionKey}:${row.state}`, row]));
    expect(bySession.get("agent:main:ws-one:idle")).toMatchObject({ mode: "ephemeral", state: "idle" });
    expect(bySession.get("agent:main:ws-one:idle")?.sizeBytes).toBeGreaterThan(0);
    expect(bySession.get("agent:main:ws-busy:live")).toMatchObject({ mode: "ephemeral" });
    expect(bySession.get("agent:main:ws-two:released")).toMatchObject({ sizeBytes: null });
    expect(inv.counts).toMatchObject({ live: 1, idle: 1, released: 1, orphaned: 0, unknown: 0 });

    const table = await runCli(["workspaces", "ls", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(table.stdout).toMatch(/^PATH\s+MODE\s+SESSION\s+STATE\s+SIZE\s+AGE\n/);
    expect(table.stdout).toContain("3 workspaces (1 live, 1 idle, 1 released)");
    await runCli(["call", "chat.abort", "--params", '{"sessionKey":"ws-busy"}', "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect((await slow).code).toBe(1);
  });

  it("offline, reads the ledger and the root: live rows, unknown entries; --orphans keeps only orphaned/unknown", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    await runCli(["chat", "one", "--session", "off-one", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    await fs.mkdir(path.join(t.root, "stray-dir"));
    await fs.writeFile(path.join(t.root, "stray-dir", "notes.txt"), "12345");
    const all = await runCli(["workspaces", "ls", "--json", "--state-dir", t.stateDir], { env: t.env });
    expect(all.code).toBe(0);
    const inv = inventory(all.stdout);
    expect(inv).toMatchObject({ source: "offline", ledger: true, root: t.root });
    expect(inv.rows.find((row) => row.sessionKey === "agent:main:off-one")).toMatchObject({ state: "live", mode: "ephemeral" });
    expect(inv.rows.find((row) => row.path === path.join(t.root, "stray-dir"))).toMatchObject({ state: "unknown", reason: "no marker", sizeBytes: 5 });
    const orphans = await runCli(["workspaces", "ls", "--orphans", "--json", "--state-dir", t.stateDir], { env: t.env });
    expect(inventory(orphans.stdout).rows.map((row) => row.state)).toEqual(["unknown"]);
  });

  it("offline with an unsafe (symlinked) ephemeral root fails with exit 1 and touches nothing", async () => {
    const t = await tempDir();
    const elsewhere = path.join(t.dir, "elsewhere");
    await fs.mkdir(elsewhere);
    await fs.writeFile(path.join(elsewhere, "keep.txt"), "x");
    await fs.symlink(elsewhere, t.root);
    const result = await runCli(["workspaces", "ls", "--state-dir", t.stateDir], { env: t.env });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("is a symlink");
    expect(await fs.readdir(elsewhere)).toEqual(["keep.txt"]);
  });

  it("exits 2 for --url with --state-dir, 3 when the gateway is unreachable", async () => {
    const t = await tempDir();
    const port = await closedPort();
    const conflict = await runCli(["workspaces", "ls", "--url", `ws://127.0.0.1:${port}`, "--state-dir", t.stateDir], { env: t.env });
    expect(conflict.code).toBe(2);
    expect(conflict.stderr).toContain("cannot be used with");
    expect((await runCli(["workspaces", "ls", "--url", `ws://127.0.0.1:${port}`], { env: t.env })).code).toBe(3);
  });
});

async function waitForLive(url: string, key: string, env: NodeJS.ProcessEnv): Promise<void> {
  for (let attempt = 0; attempt < 500; attempt++) {
    const result = await runCli(["call", "workspaces.list", "--params", JSON.stringify({ sessionKey: key, states: ["live"] }), "--json", "--url", url, "--token", TOKEN], { env });
    if ((JSON.parse(result.stdout) as { leases: unknown[] }).leases.length > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`no live workspace for ${key}`);
}

describe("ocgw workspaces gc", () => {
  it("after a SIGKILLed gateway: ls --orphans shows its live workspaces as orphaned, gc offline reclaims them and closes the ledger rows", async () => {
    const t = await tempDir();
    const child = await spawnGateway(["--port", "0", "--state-dir", t.stateDir, "--config", t.config], { ...t.env, OCGW_GATEWAY_TOKEN: TOKEN });
    for (const key of ["crash-a", "crash-b", "crash-c"]) {
      const chat = await runCli(["chat", `hi ${key}`, "--session", key, "--url", child.url, "--token", TOKEN], { env: t.env });
      expect(chat.stdout).toBe(`Echo: hi ${key}\n`);
    }
    const left = await leaseDirs(t.root);
    expect(left).toHaveLength(3);
    child.child.kill("SIGKILL");
    expect(await child.exited).toBe("SIGKILL");
    expect(await leaseDirs(t.root)).toEqual(left);

    const ls = await runCli(["workspaces", "ls", "--orphans", "--json", "--state-dir", t.stateDir, "--config", t.config], { env: t.env });
    expect(ls.code).toBe(0);
    const orphans = inventory(ls.stdout).rows;
    expect(orphans.map((row) => row.state)).toEqual(["orphaned", "orphaned", "orphaned"]);
    expect(orphans.map((row) => path.basename(row.path ?? "")).sort()).toEqual(left);
    expect(orphans.map((row) => row.sessionKey).sort()).toEqual(["agent:main:crash-a", "agent:main:crash-b", "agent:main:crash-c"]);
    const table = await runCli(["workspaces", "ls", "--orphans", "--state-dir", t.stateDir, "--config", t.config], { env: t.env });
    expect(table.stdout).toContain("3 workspaces (3 orphaned)");
    expect(table.stdout).toContain("Reclaim orphans with: ocgw workspaces gc");

    const dry = await runCli(["workspaces", "gc", "--dry-run", "--json", "--state-dir", t.stateDir, "--config", t.config], { env: t.env });
    expect((JSON.parse(dry.stdout) as GcSummary).reclaimed).toBe(3);
    expect(await leaseDirs(t.root)).toEqual(left);

    const gc = await runCli(["workspaces", "gc", "--state-dir", t.stateDir, "--config", t.config], { env: t.env });
    expect(gc.code).toBe(0);
    expect(gc.stdout).toContain("reclaimed 3, ledger rows closed 3");
    expect(await leaseDirs(t.root)).toEqual([]);
    const after = await runCli(["workspaces", "ls", "--json", "--state-dir", t.stateDir, "--config", t.config], { env: t.env });
    const rows = inventory(after.stdout).rows;
    expect(rows.filter((row) => row.state !== "released")).toEqual([]);
    expect(rows.filter((row) => row.state === "released")).toHaveLength(3);
  });

  it("--url collects through the running gateway: dry run keeps live workspaces, a real run reclaims a dead instance's", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    await runCli(["chat", "one", "--session", "gc-live", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    // A dead instance's trash entry: provably ours and reclaimable.
    const trash = path.join(t.root, ".trash-00000000-dead-4000-8000-000000000000-abcdefghij");
    await fs.mkdir(path.join(trash, "deep"), { recursive: true });
    const dry = await runCli(["workspaces", "gc", "--dry-run", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain("(dry run: nothing removed)");
    expect(dry.stdout).toContain("would reclaim 1");
    expect(dry.stdout).toContain("kept 1 × owner instance is alive");
    const real = await runCli(["workspaces", "gc", "--json", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    const summary = JSON.parse(real.stdout) as GcSummary;
    expect(summary).toMatchObject({ dryRun: false, reclaimed: 1, kept: 1, failed: 0 });
    await expect(fs.lstat(trash)).rejects.toMatchObject({ code: "ENOENT" });
    expect(await leaseDirs(t.root)).toHaveLength(1);
  });

  it("draws a progress bar on a terminal stderr when there are more than 20 entries, and none otherwise", async () => {
    const t = await tempDir();
    await fs.mkdir(t.root, { mode: 0o700 });
    // Trash entries of a dead instance: provably ours, so all reclaimable.
    for (let i = 0; i < 25; i++) await fs.mkdir(path.join(t.root, `.trash-deadbeef-0000-${String(i).padStart(4, "0")}-abcdefghij`));
    let drawn = "";
    const { run } = await import("../src/run.ts");
    const tty = {
      isTTY: true,
      columns: 80,
      write: (chunk: string) => {
        drawn += chunk;
        return true;
      },
      cursorTo: () => true,
      clearLine: () => true,
      moveCursor: () => true,
      on: () => tty,
      removeListener: () => tty,
    };
    let stdout = "";
    const code = await run(["workspaces", "gc", "--state-dir", t.stateDir], { stdout: { write: (chunk: string) => (stdout += chunk) }, stderr: tty, env: t.env, exit: () => undefined });
    expect(code).toBe(0);
    expect(stdout).toContain("reclaimed 25");
    expect(drawn).toContain("25/25");
    expect((await fs.readdir(t.root)).filter((name) => name.startsWith(".trash-"))).toEqual([]);

    await fs.mkdir(path.join(t.root, ".trash-deadbeef-0000-9999-abcdefghij"));
    drawn = "";
    expect(await run(["workspaces", "gc", "--state-dir", t.stateDir], { stdout: { write: () => true }, stderr: tty, env: t.env, exit: () => undefined })).toBe(0);
    expect(drawn).toBe("");
  });

  it("exits 2 for --legacy with --url or an unknown flag, 3 when the gateway is unreachable, 1 on a broken config", async () => {
    const t = await tempDir();
    const port = await closedPort();
    expect((await runCli(["workspaces", "gc", "--legacy", t.dir, "--url", `ws://127.0.0.1:${port}`], { env: t.env })).code).toBe(2);
    expect((await runCli(["workspaces", "gc", "--force"], { env: t.env })).code).toBe(2);
    expect((await runCli(["workspaces", "gc", "--url", `ws://127.0.0.1:${port}`], { env: t.env })).code).toBe(3);
    await fs.writeFile(t.config, "{ workspace: { implicit: 'sometimes' } }");
    const broken = await runCli(["workspaces", "gc", "--state-dir", t.stateDir], { env: t.env });
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain("workspace.implicit");
  });
});
