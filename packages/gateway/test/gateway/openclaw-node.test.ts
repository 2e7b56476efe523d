/**
 * The real third-party client, openclaw-node 0.14.0, against a real gateway: its chat (which uses
 * the `agent` method's two-response pattern), health, sessions.list and chat.history helpers.
 */
import { existsSync, statSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { OpenClawClient } from "openclaw-node";
import type { ChatChunk } from "openclaw-node";
import { describe, expect, it, onTestFinished } from "vitest";
import { TOKEN, leaseDirs, startTestGateway } from "./harness.ts";
import type { TestGateway } from "./harness.ts";

interface SessionRow {
  key: string;
  sessionId: string;
}

interface HistoryMessage {
  role: string;
  content: unknown;
  __openclaw: { seq: number };
}

/** Connects an openclaw-node client whose device identity lives in the test's temp dir. */
async function connectNode(t: TestGateway): Promise<{ client: OpenClawClient; identityPath: string }> {
  const identityPath = path.join(t.dir, "client", "device-identity.json");
  const client = new OpenClawClient({ url: t.url, token: TOKEN, deviceIdentityPath: identityPath, autoReconnect: false });
  onTestFinished(() => client.disconnect());
  const hello = await client.connect();
  expect(hello.type).toBe("hello-ok");
  expect(hello.protocol).toBe(4);
  return { client, identityPath };
}

/** Fingerprint of the real home's identity file, to prove the client never touched it. */
function homeIdentity(): string {
  const file = path.join(os.homedir(), ".openclaw", "device-identity.json");
  if (!existsSync(file)) return "absent";
  const st = statSync(file);
  return `${st.size}:${st.mtimeMs}`;
}

describe("openclaw-node 0.14.0", () => {
  it("chatSync returns the gateway's reply; health, sessions.list and chat.history helpers work", async () => {
    const t = await startTestGateway();
    const before = homeIdentity();
    const { client, identityPath } = await connectNode(t);
    expect(existsSync(identityPath)).toBe(true);
    expect(client.isConnected).toBe(true);
    expect(client.hasMethod("agent")).toBe(true);

    expect(await client.chatSync("hello node", { sessionKey: "Node-Chat" })).toBe("Echo: hello node");

    const health = await client.health();
    expect(health).toMatchObject({ ok: true });

    const list = (await client.sessions.list()) as { sessions: SessionRow[]; count: number } | undefined;
    expect(list?.sessions.map((s) => s.key)).toEqual(["agent:main:node-chat"]);
    expect(list?.count).toBe(1);

    const history = (await client.sessions.history("Node-Chat")) as { messages: HistoryMessage[] } | undefined;
    expect(history?.messages.map((m) => [m.role, m.content])).toEqual([
      ["user", "hello node"],
      ["assistant", [{ type: "text", text: "Echo: hello node" }]],
    ]);
    expect(history?.messages.map((m) => m.__openclaw.seq)).toEqual([1, 2]);

    const agents = await client.agents.list();
    expect(agents.defaultId).toBe("main");
    expect(agents.agents.map((a) => a.id)).toEqual(["main"]);

    // The implicit session got an ephemeral workspace in the test's root.
    expect(await leaseDirs(t.root)).toHaveLength(1);

    await client.disconnect();
    expect(client.isConnected).toBe(false);
    expect(homeIdentity()).toBe(before);
  });

  it("chat() streams text chunks between agent_start and agent_end, then done; agentWait reports the run", async () => {
    const t = await startTestGateway();
    const { client } = await connectNode(t);
    const chunks: ChatChunk[] = [];
    for await (const chunk of client.chat("streamed words here", { sessionKey: "stream" })) chunks.push(chunk);

    const types = chunks.map((c) => c.type);
    expect(types[0]).toBe("agent_start");
    expect(types.at(-1)).toBe("done");
    expect(types).toContain("agent_end");
    expect(types).not.toContain("error");
    const text = chunks.flatMap((c) => (c.type === "text" ? [c.text] : [])).join("");
    expect(text).toBe("Echo: streamed words here");
    const runId = chunks[0]?.runId as string;
    expect(chunks.every((c) => c.runId === runId)).toBe(true);

    expect(await client.agentWait(runId)).toMatchObject({ runId, status: "ok" });
    await client.disconnect();
  });

  it("chat() surfaces a failed run as an error chunk and still ends", async () => {
    const t = await startTestGateway();
    const { client } = await connectNode(t);
    const chunks: ChatChunk[] = [];
    for await (const chunk of client.chat("/echo:error kaput", { sessionKey: "broken" })) chunks.push(chunk);
    const errors = chunks.filter((c) => c.type === "error");
    expect(errors).toHaveLength(1);
    expect(errors[0]?.text).toContain("kaput");
    expect(chunks.at(-1)?.type).toBe("done");
    await client.disconnect();
  });
});
