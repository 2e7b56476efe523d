import { describe, expect, it } from "vitest";
import { TOKEN, closedPort, runCli, startTestGateway, tempDir } from "./helpers.ts";

describe("ocgw sessions ls", () => {
  it("shows key, agent, workspace mode, status and updated age as a table", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    await runCli(["chat", "hi", "--session", "table-one", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    await runCli(["chat", "hi", "--session", "table-two", "--no-workspace", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    const result = await runCli(["sessions", "ls", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^KEY\s+AGENT\s+WORKSPACE\s+STATUS\s+UPDATED$/);
    expect(lines.find((line) => line.startsWith("agent:main:table-one"))).toMatch(/^agent:main:table-one\s+main\s+ephemeral\s+idle\s+\d+s ago$/);
    expect(lines.find((line) => line.startsWith("agent:main:table-two"))).toMatch(/\s+none\s+idle\s+/);
    expect(lines.at(-1)).toBe("2 sessions");
  });

  it("--json prints every session as JSON", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    for (let i = 0; i < 3; i++) await runCli(["chat", "x", "--session", `json-${i}`, "--no-workspace", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    const result = await runCli(["sessions", "ls", "--json", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(result.code).toBe(0);
    const body = JSON.parse(result.stdout) as { sessions: { key: string; workspaceMode: string }[] };
    expect(body.sessions.map((session) => session.key).sort()).toEqual(["agent:main:json-0", "agent:main:json-1", "agent:main:json-2"]);
  });

  it("exits 2 for an unknown subcommand or flag, 3 when unreachable or the token is missing", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    const sub = await runCli(["sessions", "rm"], { env: t.env });
    expect(sub.code).toBe(2);
    expect(sub.stderr).toContain("unknown command 'rm'");
    expect((await runCli(["sessions", "ls", "--all"], { env: t.env })).code).toBe(2);
    const port = await closedPort();
    expect((await runCli(["sessions", "ls", "--url", `ws://127.0.0.1:${port}`], { env: t.env })).code).toBe(3);
    const noToken = await runCli(["sessions", "ls", "--url", gateway.url], { env: t.env });
    expect(noToken.code).toBe(3);
    expect(noToken.stderr).toContain("gateway token missing");
  });
});
