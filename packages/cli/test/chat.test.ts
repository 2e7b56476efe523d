import { describe, expect, it } from "vitest";
import { TOKEN, closedPort, leaseDirs, runCli, startTestGateway, tempDir } from "./helpers.ts";

describe("ocgw chat", () => {
  it("streams the reply to stdout with a newline at the end, exit 0, and the implicit session gets an ephemeral workspace", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    const result = await runCli(["chat", "hello", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe("Echo: hello\n");
    expect(result.stderr).toMatch(/^\(session agent:main:cli-[0-9a-f-]{36}\)\n$/);
    expect(await leaseDirs(t.root)).toHaveLength(1);
  });

  it("prints each delta as it arrives (a multi-delta stream arrives whole, in order)", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    const result = await runCli(["chat", "/echo:stream 4 1", "--session", "stream", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe("tick 1 tick 2 tick 3 tick 4 \n");
    expect(result.stderr).toBe("");
  });

  it("--session reuses a key and --no-workspace runs without a workspace", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    const result = await runCli(["chat", "no dir", "--session", "bare", "--no-workspace", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe("Echo: no dir\n");
    expect(await leaseDirs(t.root)).toEqual([]);
    expect(gateway.store.getSession("agent:main:bare")?.workspaceMode).toBe("none");
    const again = await runCli(["chat", "second", "--session", "bare", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(again.stdout).toBe("Echo: second\n");
    expect(gateway.store.listMessages("agent:main:bare").total).toBe(4);
  });

  it("a failing run prints its error to stderr and exits 1", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    const result = await runCli(["chat", "/echo:error model exploded", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain("ocgw: the run failed: model exploded");
  });

  it("a turn that outlives --timeout is aborted on the gateway and exits 1", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    const result = await runCli(["chat", "/echo:sleep 60000 late", "--session", "slow", "--timeout", "200", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/ocgw: Run [0-9a-f-]{36} did not end within 200 ms and was aborted/);
    // The abort ended the run: its slot is free for the next turn at once.
    const next = await runCli(["chat", "after", "--session", "slow", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(next.stdout).toBe("Echo: after\n");
  });

  it("an RPC refusal (unknown agent) exits 1 with the gateway's message", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    const result = await runCli(["chat", "hi", "--session", "agent:ghost:x", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('ocgw: chat.send failed: UNKNOWN_AGENT_ID: Agent "ghost" no longer exists in configuration');
  });

  it("exits 2 without a message and 3 when the gateway is unreachable", async () => {
    const t = await tempDir();
    expect((await runCli(["chat"], { env: t.env })).code).toBe(2);
    const port = await closedPort();
    const result = await runCli(["chat", "hello", "--url", `ws://127.0.0.1:${port}`], { env: t.env });
    expect(result.code).toBe(3);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain("connection refused");
  });
});
