import * as fs from "node:fs/promises";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { WebSocketServer } from "ws";
import { TOKEN, type TestDir, closedPort, runCli, silentServer, startTestGateway, tempDir } from "./helpers.ts";

interface FakeServer {
  readonly url: string;
  readonly port: number;
  /** The first frame each connection sent (the connect request), as received. */
  readonly frames: string[];
}

/**
 * A WebSocket server on 127.0.0.1 that sends connect.challenge, records the connect request and
 * refuses it (`unauthorized`) — it never learns anything but what the client chose to send.
 */
async function fakeGateway(): Promise<FakeServer> {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((resolve) => server.once("listening", resolve));
  const frames: string[] = [];
  server.on("connection", (socket) => {
    socket.send(JSON.stringify({ type: "event", event: "connect.challenge", payload: { nonce: "n", ts: Date.now() } }));
    socket.once("message", (data) => {
      const text = String(data);
      frames.push(text);
      const id = (JSON.parse(text) as { id?: unknown }).id;
      socket.send(JSON.stringify({ type: "res", id, ok: false, error: { code: "INVALID_REQUEST", message: "unauthorized" } }), () => socket.close());
    });
  });
  onTestFinished(async () => {
    for (const client of server.clients) client.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as AddressInfo).port;
  return { url: `ws://127.0.0.1:${port}`, port, frames };
}

/** `auth` of the connect request in `frame`. */
function authOf(frame: string | undefined): { token?: unknown; password?: unknown } | undefined {
  return (JSON.parse(frame ?? "{}") as { params?: { auth?: { token?: unknown; password?: unknown } } }).params?.auth;
}

/** Every local secret there is: OCGW_GATEWAY_TOKEN, the config's token (local port `port`) and the state dir's token file. */
async function localSecrets(t: TestDir, port: number): Promise<NodeJS.ProcessEnv> {
  await fs.writeFile(t.config, JSON.stringify({ gateway: { port, auth: { token: "config-token" } } }));
  await fs.mkdir(t.stateDir, { recursive: true });
  await fs.writeFile(path.join(t.stateDir, "gateway.token"), "file-token\n", { mode: 0o600 });
  return { ...t.env, HOME: path.join(t.dir, "home"), OCGW_STATE_DIR: t.stateDir, OCGW_GATEWAY_TOKEN: "env-token" };
}

describe("ocgw call", () => {
  it("prints the payload of health as pretty JSON and exits 0", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    const result = await runCli(["call", "health", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('\n  "ok": true');
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: true, workspaces: { implicit: "ephemeral", root: t.root } });
  });

  it("takes the token from OCGW_GATEWAY_TOKEN, params from --params, and prints compact JSON with --json", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    // The gateway is the local one (loopback, the config's port): OCGW_GATEWAY_TOKEN is for it.
    await fs.writeFile(t.config, JSON.stringify({ gateway: { port: gateway.port }, workspace: { ephemeral: { root: t.root }, gc: { intervalMs: 0 } } }));
    await runCli(["chat", "one", "--session", "alpha", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    await runCli(["chat", "two", "--session", "beta", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    const result = await runCli(["call", "sessions.list", "--params", '{"search":"alpha"}', "--json", "--url", gateway.url], { env: { ...t.env, OCGW_GATEWAY_TOKEN: TOKEN } });
    expect(result.code).toBe(0);
    expect(result.stdout.trim().split("\n")).toHaveLength(1);
    const payload = JSON.parse(result.stdout) as { sessions: { key: string }[] };
    expect(payload.sessions.map((session) => session.key)).toEqual(["agent:main:alpha"]);
  });

  it("--expect-final waits past agent's accepted reply for the final result", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    const params = JSON.stringify({ message: "final please", idempotencyKey: "run-expect-final" });
    const final = await runCli(["call", "agent", "--params", params, "--expect-final", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(final.code).toBe(0);
    expect(JSON.parse(final.stdout)).toMatchObject({ status: "ok", result: { payloads: [{ text: "Echo: final please" }] } });
    const interim = await runCli(["call", "agent", "--params", JSON.stringify({ message: "again", idempotencyKey: "run-interim" }), "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(JSON.parse(interim.stdout)).toMatchObject({ status: "accepted" });
  });

  it("an RPC error prints `error: <code>: <message>` to stderr and exits 1", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    const result = await runCli(["call", "no.such.method", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe("error: UNKNOWN_METHOD: unknown method: no.such.method\n");
  });

  it("with --json an RPC error is {ok:false,error} on stdout, exit 1", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    const result = await runCli(["call", "chat.send", "--params", '{"sessionKey":"x"}', "--json", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    expect(result.code).toBe(1);
    const body = JSON.parse(result.stdout) as { ok: boolean; error: { code: string; message: string; details: { code: string } } };
    expect(body.ok).toBe(false);
    expect(body.error).toMatchObject({ code: "INVALID_REQUEST", details: { code: "INVALID_PARAMS" } });
    expect(body.error.message).toContain("invalid chat.send params");
  });

  it("bad --params JSON is a usage error naming the problem, exit 2, and nothing is sent", async () => {
    const t = await tempDir();
    const port = await closedPort();
    const bad = await runCli(["call", "health", "--params", "{probe:", "--url", `ws://127.0.0.1:${port}`], { env: t.env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^ocgw: --params is not valid JSON \(.+\); pass an object/);
    const notObject = await runCli(["call", "health", "--params", "[1,2]", "--url", `ws://127.0.0.1:${port}`], { env: t.env });
    expect(notObject.code).toBe(2);
    expect(notObject.stderr).toContain("--params must be a JSON object");
  });

  it("usage errors exit 2: a missing method, an unknown flag, a bad --timeout, a non-ws --url", async () => {
    const t = await tempDir();
    expect((await runCli(["call"], { env: t.env })).code).toBe(2);
    const unknown = await runCli(["call", "health", "--bogus"], { env: t.env });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("ocgw: unknown option '--bogus'");
    expect((await runCli(["call", "health", "--timeout", "soon"], { env: t.env })).code).toBe(2);
    const url = await runCli(["call", "health", "--url", "http://127.0.0.1:1"], { env: t.env });
    expect(url.code).toBe(2);
    expect(url.stderr).toContain("must start with ws:// or wss://");
  });

  it("an unreachable gateway exits 3 with one line saying how to fix it", async () => {
    const t = await tempDir();
    const port = await closedPort();
    const result = await runCli(["call", "health", "--url", `ws://127.0.0.1:${port}`], { env: t.env });
    expect(result.code).toBe(3);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain(`ocgw: Cannot reach the gateway at ws://127.0.0.1:${port}: connection refused (ECONNREFUSED). Start the gateway (ocgw gateway run)`);
    const json = await runCli(["call", "health", "--json", "--url", `ws://127.0.0.1:${port}`], { env: t.env });
    expect(json.code).toBe(3);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, error: { code: "GATEWAY_UNREACHABLE" } });
  });

  it("a wrong token fails the handshake: exit 3", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    const result = await runCli(["call", "health", "--url", gateway.url, "--token", "wrong"], { env: t.env });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain("rejected the connection: AUTH_TOKEN_MISMATCH: unauthorized: gateway token mismatch");
  });

  it("a server that never sends the challenge fails the handshake within --timeout: exit 3", async () => {
    const t = await tempDir();
    const url = await silentServer();
    const result = await runCli(["call", "health", "--url", url, "--timeout", "300"], { env: t.env });
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/ocgw: Cannot reach the gateway at .*no connection within 300 ms|did not complete the handshake within 300 ms/);
  });

  it("defaults --url to ws://127.0.0.1:<config port>", async () => {
    const t = await tempDir();
    const port = await closedPort();
    const { writeFile } = await import("node:fs/promises");
    await writeFile(t.config, JSON.stringify({ gateway: { port } }));
    const result = await runCli(["call", "health"], { env: { ...t.env, HOME: path.join(t.dir, "home"), OCGW_STATE_DIR: t.stateDir } });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain(`ws://127.0.0.1:${port}`);
  });

  it("ocgw call --url of another server sends it no token", async () => {
    const t = await tempDir();
    const server = await fakeGateway();
    const env = await localSecrets(t, await closedPort());
    const result = await runCli(["call", "health", "--url", server.url], { env });
    expect(server.frames).toHaveLength(1);
    const auth = authOf(server.frames[0]);
    expect(auth?.token).toBeUndefined();
    expect(auth?.password).toBeUndefined();
    expect(server.frames[0]).not.toMatch(/env-token|config-token|file-token/);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain(`ocgw: The gateway at ${server.url} rejected the connection: INVALID_REQUEST: unauthorized`);
  });

  it("ocgw call --url of another server with --token sends it exactly that token", async () => {
    const t = await tempDir();
    const server = await fakeGateway();
    const env = await localSecrets(t, await closedPort());
    const result = await runCli(["call", "health", "--url", server.url, "--token", "explicit-one"], { env });
    expect(server.frames).toHaveLength(1);
    expect(authOf(server.frames[0])).toEqual({ token: "explicit-one" });
    expect(result.code).toBe(3);
  });

  it("ocgw call of the local gateway (loopback, the config's port) sends the token file's token when nothing else is set", async () => {
    const t = await tempDir();
    const server = await fakeGateway();
    const { OCGW_GATEWAY_TOKEN: _unused, ...env } = await localSecrets(t, server.port);
    await fs.writeFile(t.config, JSON.stringify({ gateway: { port: server.port } }));
    const result = await runCli(["call", "health", "--url", `ws://localhost:${server.port}`], { env });
    expect(authOf(server.frames[0])).toEqual({ token: "file-token" });
    expect(result.code).toBe(3);
    const byDefault = await runCli(["call", "health"], { env });
    expect(authOf(server.frames[1])).toEqual({ token: "file-token" });
    expect(byDefault.code).toBe(3);
  });
});
