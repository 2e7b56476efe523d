import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { OpenClawClient } from "openclaw-node";
import { describe, expect, it, onTestFinished } from "vitest";
import { z } from "zod";
import { defineMethod } from "../../src/protocol/index.ts";
import { TOKEN, connectClient, connectParams, echoMethods, failedConnect, openClient, startServer, withTimeout } from "./helpers.ts";

const MISMATCH = "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)";

describe("challenge", () => {
  it("pushes connect.challenge with a uuid nonce and a ms ts, without seq", async () => {
    const server = await startServer();
    const before = Date.now();
    const client = await openClient(server.url);
    const challenge = await client.nextEvent("connect.challenge");
    const payload = challenge.payload as { nonce: unknown; ts: unknown };
    expect(payload.nonce).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(typeof payload.ts).toBe("number");
    expect(payload.ts as number).toBeGreaterThanOrEqual(before - 1000);
    expect(challenge).not.toHaveProperty("seq");
    expect(client.received).toHaveLength(1);
  });
});

describe("connect", () => {
  it("answers hello-ok with protocol 4, the method table, granted scopes and policy", async () => {
    const server = await startServer({ limits: { tickIntervalMs: 12_345 } });
    const { hello } = await connectClient(server.url, { scopes: ["operator.read"] });
    expect(hello).toMatchObject({
      type: "hello-ok",
      protocol: 4,
      server: { version: "0.0.0-test" },
      features: { methods: Object.keys(echoMethods), events: ["connect.challenge", "chat", "agent", "tick", "shutdown"] },
      auth: { role: "operator", scopes: ["operator.read"], method: "token" },
      policy: { maxPayload: 25 * 1024 * 1024, maxBufferedBytes: 50 * 1024 * 1024, tickIntervalMs: 12_345 },
    });
    expect(hello).not.toHaveProperty("auth.deviceToken");
    const snapshot = hello.snapshot as Record<string, unknown>;
    expect(snapshot).toMatchObject({
      presence: [],
      health: { ok: true },
      stateVersion: { presence: 0, health: 0 },
      sessionDefaults: { defaultAgentId: "main", mainSessionKey: "agent:main:main" },
    });
    expect(typeof snapshot.uptimeMs).toBe("number");
    const connId = (hello.server as { connId: string }).connId;
    expect(server.connections().map((conn) => conn.connId)).toEqual([connId]);
    expect(server.connections()[0]).toMatchObject({ client: { id: "gateway-client", mode: "backend", version: "1.0.0" } });
  });

  it("grants read+write when the request names no scopes", async () => {
    const server = await startServer();
    const { hello } = await connectClient(server.url);
    expect((hello.auth as { scopes: string[] }).scopes).toEqual(["operator.read", "operator.write"]);
  });

  it("accepts unknown client ids, modes, extra fields, other upstream scopes and a device block", async () => {
    const server = await startServer();
    const { hello } = await connectClient(server.url, {
      client: { id: "my-own-ui", mode: "something-new", extra: true },
      scopes: ["operator.read", "operator.talk"],
      caps: ["tool-events"],
      device: { id: "abc", publicKey: "k", signature: "s", signedAt: 1, nonce: "n" },
      somethingElse: { nested: 1 },
    });
    expect((hello.auth as { scopes: string[] }).scopes).toEqual(["operator.read", "operator.talk"]);
    const conn = server.connections()[0];
    expect(conn?.caps.has("tool-events")).toBe(true);
    expect(conn?.client).toEqual({ id: "my-own-ui", mode: "something-new" });
  });

  it("rejects a wrong token with upstream's error and closes 1008 with the message", async () => {
    const server = await startServer();
    const { res, close } = await failedConnect(server.url, connectParams({ auth: { token: "wrong" } }));
    expect(res.ok).toBe(false);
    expect(res.error).toEqual({
      code: "INVALID_REQUEST",
      message: MISMATCH,
      details: { code: "AUTH_TOKEN_MISMATCH", authReason: "token_mismatch", canRetryWithDeviceToken: false, recommendedNextStep: "update_auth_credentials" },
    });
    expect(close.code).toBe(1008);
    expect(MISMATCH.startsWith(close.reason)).toBe(true);
    expect(Buffer.byteLength(close.reason)).toBeLessThanOrEqual(123);
    expect(close.reason.length).toBeGreaterThan(50);
    expect(server.connections()).toEqual([]);
  });

  it("rejects a missing token with AUTH_TOKEN_MISSING and closes 1008", async () => {
    const server = await startServer();
    const { res, close } = await failedConnect(server.url, connectParams({ auth: undefined }));
    expect(res.error?.code).toBe("INVALID_REQUEST");
    expect(res.error?.message).toMatch(/^unauthorized: gateway token missing/);
    expect(res.error?.details?.code).toBe("AUTH_TOKEN_MISSING");
    expect(close.code).toBe(1008);
  });

  it("accepts the shared secret as auth.password", async () => {
    const server = await startServer();
    const { hello } = await connectClient(server.url, { auth: { password: TOKEN } });
    expect(hello.type).toBe("hello-ok");
  });

  it('needs no auth with mode "none", and then never grants operator.admin', async () => {
    const server = await startServer({ auth: { mode: "none" } });
    const { client, hello } = await connectClient(server.url, { auth: undefined, scopes: ["operator.read", "operator.write", "operator.admin"] });
    expect(hello.auth).toMatchObject({ method: "none", scopes: ["operator.read", "operator.write"] });
    const res = await client.request("test.echo", { text: "hi" });
    expect(res).toMatchObject({ ok: true, payload: { echoed: "hi" } });
  });

  it("rejects a protocol range without 4: details, then close 1002", async () => {
    const server = await startServer();
    const { res, close } = await failedConnect(server.url, connectParams({ minProtocol: 5, maxProtocol: 6 }));
    expect(res.error).toEqual({
      code: "INVALID_REQUEST",
      message: "protocol mismatch",
      details: { code: "PROTOCOL_MISMATCH", clientMinProtocol: 5, clientMaxProtocol: 6, expectedProtocol: 4 },
    });
    expect(close).toEqual({ code: 1002, reason: "protocol mismatch" });
  });

  it("accepts a range that includes 4", async () => {
    const server = await startServer();
    const { hello } = await connectClient(server.url, { minProtocol: 3, maxProtocol: 5 });
    expect(hello.protocol).toBe(4);
  });

  it("rejects malformed connect params with the offending field, then close 1008", async () => {
    const server = await startServer();
    const { res, close } = await failedConnect(server.url, connectParams({ minProtocol: "4", client: { id: 7, mode: "cli" } }));
    expect(res.error?.code).toBe("INVALID_REQUEST");
    expect(res.error?.message).toBe(
      "invalid connect params: at /minProtocol: Invalid input: expected number, received string; at /client/id: Invalid input: expected string, received number",
    );
    expect(close.code).toBe(1008);
  });

  it("names a missing required connect field the way upstream does", async () => {
    const server = await startServer();
    const { res, close } = await failedConnect(server.url, { minProtocol: 4, maxProtocol: 4, auth: { token: TOKEN } });
    expect(res.error?.message).toBe("invalid connect params: must have required property 'client'");
    expect(close.code).toBe(1008);
  });

  it("answers a first request that is not connect with INVALID_REQUEST, then closes 1008", async () => {
    const server = await startServer();
    const client = await openClient(server.url);
    await client.nextEvent("connect.challenge");
    const res = await client.request("test.echo", { text: "x" });
    expect(res.ok).toBe(false);
    expect(res.error).toMatchObject({ code: "INVALID_REQUEST", message: "invalid handshake: first request must be connect" });
    const close = await withTimeout(client.closed, "close");
    expect(close.code).toBe(1008);
  });

  it("closes 1008 without a response when the first frame is not JSON", async () => {
    const server = await startServer();
    const client = await openClient(server.url);
    await client.nextEvent("connect.challenge");
    client.ws.send("this is { not json");
    const close = await withTimeout(client.closed, "close");
    expect(close.code).toBe(1008);
    expect(client.received.filter((frame) => frame.type === "res")).toEqual([]);
  });

  it("closes 1008 without a response when the first frame is not a request", async () => {
    const server = await startServer();
    const client = await openClient(server.url);
    await client.nextEvent("connect.challenge");
    client.sendJson({ type: "event", event: "connect", payload: {} });
    const close = await withTimeout(client.closed, "close");
    expect(close.code).toBe(1008);
    expect(client.received.filter((frame) => frame.type === "res")).toEqual([]);
  });

  it("closes 1009 on a pre-auth frame above preauthMaxBytes", async () => {
    const server = await startServer();
    const client = await openClient(server.url);
    await client.nextEvent("connect.challenge");
    client.sendJson({ type: "req", id: "big", method: "connect", params: { ...connectParams(), pad: "x".repeat(70_000) } });
    const close = await withTimeout(client.closed, "close");
    expect(close.code).toBe(1009);
    expect(client.received.filter((frame) => frame.type === "res")).toEqual([]);
  });

  it("allows frames above preauthMaxBytes after the handshake", async () => {
    const server = await startServer({ limits: { preauthMaxBytes: 1024 } });
    const { client } = await connectClient(server.url);
    const text = "y".repeat(10_000);
    const res = await client.request("test.echo", { text });
    expect(res).toMatchObject({ ok: true, payload: { echoed: text } });
  });

  it('closes 1008 "handshake timeout" when no connect arrives within handshakeTimeoutMs', async () => {
    const server = await startServer({ limits: { handshakeTimeoutMs: 200 } });
    const client = await openClient(server.url);
    await client.nextEvent("connect.challenge");
    const close = await withTimeout(client.closed, "handshake timeout close");
    expect(close).toEqual({ code: 1008, reason: "handshake timeout" });
  });

  it("keeps a connection that completed the handshake past handshakeTimeoutMs", async () => {
    const server = await startServer({ limits: { handshakeTimeoutMs: 100 } });
    const { client } = await connectClient(server.url);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const res = await client.request("test.echo", { text: "still here" });
    expect(res.ok).toBe(true);
  });

  it("answers a second connect with 'already connected' and keeps the socket", async () => {
    const server = await startServer();
    const { client } = await connectClient(server.url);
    const res = await client.request("connect", connectParams());
    expect(res.error).toMatchObject({ code: "INVALID_REQUEST", message: "already connected" });
    expect((await client.request("test.echo", { text: "ok" })).ok).toBe(true);
  });
});

describe("openclaw-node 0.14.0", () => {
  it("connects, reads features.methods and drives the agent interim/final pattern", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "ocgw-protocol-"));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const server = await startServer({
      methods: {
        health: defineMethod({ scope: "operator.read", params: z.object({}), handler: async () => ({ ok: true }) }),
        agent: defineMethod({
          scope: "operator.write",
          params: z.looseObject({ message: z.string(), idempotencyKey: z.string() }),
          handler: async (params, ctx) => {
            const runId = params.idempotencyKey;
            ctx.interim({ runId, status: "accepted" });
            server.send(ctx.conn.connId, "agent", { runId, seq: 1, stream: "assistant", ts: Date.now(), data: { text: "Hel", delta: "Hel" } });
            server.send(ctx.conn.connId, "agent", { runId, seq: 2, stream: "assistant", ts: Date.now(), data: { text: "Hello", delta: "lo" } });
            return { runId, status: "ok", summary: "completed" };
          },
        }),
      },
    });
    const client = new OpenClawClient({ url: server.url, token: TOKEN, deviceIdentityPath: path.join(dir, "identity.json"), autoReconnect: false });
    client.on("error", () => undefined);
    onTestFinished(() => client.disconnect());
    const hello = await withTimeout(client.connect(), "openclaw-node connect");
    expect(hello.type).toBe("hello-ok");
    expect(client.availableMethods).toEqual(["health", "agent"]);
    expect(await withTimeout(client.health(), "health")).toEqual({ ok: true });
    expect(await withTimeout(client.chatSync("hi"), "chatSync")).toBe("Hello");
  });
});
