/**
 * Secure by default, against a real gateway on 127.0.0.1:0: each case asserts the refusal and that
 * the gateway still serves a well-behaved client meanwhile.
 */
import * as fs from "node:fs/promises";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import WebSocket from "ws";
import { secretsEqual } from "../../src/protocol/handshake.ts";
import { type GatewayConfigInput, type GatewayHandle, startGateway } from "../../src/index.ts";
import { spawnGatewayChild } from "../gateway/lifecycle-harness.ts";
import { type TestClient, connectClient, connectParams, failedConnect, openClient } from "./helpers.ts";

/** Peak resident set size of a process (Linux: VmHWM in /proc/<pid>/status). */
async function peakRssBytes(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, "utf8");
  const kb = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

interface Secured {
  readonly gateway: GatewayHandle;
  readonly url: string;
  readonly dir: string;
  readonly stateDir: string;
  readonly log: string[];
}

async function tempDir(): Promise<string> {
  const dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "ocgw-sec-")));
  onTestFinished(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A gateway with the embedded defaults but port 0, its own state dir and ephemeral root, and `gateway` overrides. */
async function startSecured(gateway: NonNullable<GatewayConfigInput["gateway"]> = {}, dir?: string): Promise<Secured> {
  const base = dir ?? (await tempDir());
  const stateDir = path.join(base, "state");
  const log: string[] = [];
  const handle = await startGateway(
    { stateDir, gateway: { port: 0, ...gateway }, workspace: { ephemeral: { root: path.join(base, "ephemeral") }, gc: { intervalMs: 0 } } },
    { log: (line) => log.push(line) },
  );
  onTestFinished(() => handle.close("test finished"));
  return { gateway: handle, url: handle.url, dir: base, stateDir, log };
}

async function tokenOf(secured: Secured): Promise<string> {
  return (await fs.readFile(path.join(secured.stateDir, "gateway.token"), "utf8")).trim();
}

/** A well-behaved client: the token, default scopes unless given. */
async function wellBehaved(url: string, token: string, scopes?: string[]): Promise<TestClient> {
  const { client } = await connectClient(url, { auth: { token }, ...(scopes === undefined ? {} : { scopes }) });
  return client;
}

async function expectServed(client: TestClient): Promise<void> {
  const res = await client.request("health", {});
  expect(res.ok, JSON.stringify(res.error)).toBe(true);
}

interface Upgrade {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: { ok: false; error: { code: string; message: string; details: { code: string }; retryAfterMs?: number } };
}

/** An upgrade the gateway is expected to refuse: its HTTP status, headers and JSON body. */
function refusedUpgrade(url: string, origin?: string): Promise<Upgrade> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, origin === undefined ? {} : { origin });
    ws.on("open", () => {
      ws.terminate();
      reject(new Error(`the upgrade${origin === undefined ? "" : ` with origin ${origin}`} was accepted`));
    });
    ws.on("error", () => undefined);
    ws.on("unexpected-response", (_request, response) => {
      let text = "";
      response.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: JSON.parse(text) as Upgrade["body"] }));
    });
  });
}

describe("auth is required by default, with a token generated into the state dir", () => {
  it("generates an owner-only token once, reuses it, never logs it, and refuses connects without it", async () => {
    const secured = await startSecured();
    const file = path.join(secured.stateDir, "gateway.token");
    expect(secured.gateway.tokenFile).toBe(file);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    const token = await tokenOf(secured);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(secured.log.join("\n")).toContain(`auth: token in ${file} (generated)`);
    expect(secured.log.join("\n")).not.toContain(token);

    const missing = await failedConnect(secured.url, connectParams({ auth: undefined }));
    expect(missing.res.error?.details).toMatchObject({ code: "AUTH_TOKEN_MISSING" });
    expect(missing.close.code).toBe(1008);
    const wrong = await failedConnect(secured.url, connectParams({ auth: { token: `${token.slice(0, -1)}x` } }));
    expect(wrong.res.error?.details).toMatchObject({ code: "AUTH_TOKEN_MISMATCH" });
    const client = await wellBehaved(secured.url, token, ["operator.admin"]);
    await expectServed(client);

    await secured.gateway.close("restart");
    const again = await startSecured({}, secured.dir);
    expect(await tokenOf(again)).toBe(token);
    expect(again.log.join("\n")).not.toContain("(generated)");
  });

  it("refuses to start on a token file others can read, or a symbolic link, and leaves it as it was", async () => {
    const dir = await tempDir();
    const stateDir = path.join(dir, "state");
    await fs.mkdir(stateDir, { mode: 0o700 });
    const file = path.join(stateDir, "gateway.token");
    await fs.writeFile(file, "leaked-token\n", { mode: 0o644 });
    await fs.chmod(file, 0o644);
    await expect(startSecured({}, dir)).rejects.toMatchObject({ code: "AUTH_TOKEN_FILE", message: expect.stringContaining("mode 0644") });
    expect(await fs.readFile(file, "utf8")).toBe("leaked-token\n");
    await fs.rm(file);
    await fs.writeFile(path.join(dir, "elsewhere"), "linked-token\n", { mode: 0o600 });
    await fs.symlink(path.join(dir, "elsewhere"), file);
    await expect(startSecured({}, dir)).rejects.toMatchObject({ code: "AUTH_TOKEN_FILE", message: expect.stringContaining("not a regular file") });
  });

  it("compares secrets by their SHA-256 digests: any length or shared prefix takes the same path and never throws", () => {
    const token = "a".repeat(43);
    for (const given of ["", "a", token.slice(0, 42), `${token}a`, "b".repeat(43), "a".repeat(10_000)]) expect(secretsEqual(given, token)).toBe(false);
    expect(secretsEqual(token, token)).toBe(true);
  });
});

describe("browsers are kept out unless their origin is allowed", () => {
  it("refuses an upgrade with a foreign Origin (403 ORIGIN_NOT_ALLOWED) before any socket exists, and serves others meanwhile", async () => {
    const secured = await startSecured({ controlUi: { allowedOrigins: ["http://127.0.0.1:5173"] } });
    const client = await wellBehaved(secured.url, await tokenOf(secured));
    for (const origin of ["https://evil.example", "http://localhost:5173", "null", "http://127.0.0.1:5174"]) {
      const refused = await refusedUpgrade(secured.url, origin);
      expect(refused.status, origin).toBe(403);
      expect(refused.body.error.details.code).toBe("ORIGIN_NOT_ALLOWED");
    }
    await expectServed(client);
  });

  it("lets an allowed origin connect, with the token", async () => {
    const secured = await startSecured({ controlUi: { allowedOrigins: ["http://127.0.0.1:5173"] } });
    const { client, hello } = await connectClient(secured.url, { auth: { token: await tokenOf(secured) } }, { origin: "http://127.0.0.1:5173" });
    expect(hello.auth).toMatchObject({ method: "token" });
    await expectServed(client);
  });

  it("throttles failed auth per browser origin even on loopback (429 with Retry-After), while a loopback client without one is exempt", async () => {
    const origin = "http://127.0.0.1:5173";
    const secured = await startSecured({ controlUi: { allowedOrigins: [origin] }, auth: { rateLimit: { maxAttempts: 3, lockoutMs: 60_000 } } });
    const token = await tokenOf(secured);
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const client = await openClient(secured.url, { origin });
      await client.nextEvent("connect.challenge");
      const res = await client.request("connect", connectParams({ auth: { token: "guess" } }));
      expect(res.error?.details).toMatchObject({ code: "AUTH_TOKEN_MISMATCH" });
    }
    const locked = await refusedUpgrade(secured.url, origin);
    expect(locked.status).toBe(429);
    expect(Number(locked.headers["retry-after"])).toBeGreaterThan(0);
    expect(locked.body.error).toMatchObject({ details: { code: "AUTH_RATE_LIMITED" }, retryable: true });
    // The same address without an Origin: loopback is exempt, however often it fails.
    for (let attempt = 0; attempt < 4; attempt += 1) await failedConnect(secured.url, connectParams({ auth: { token: "guess" } }));
    await expectServed(await wellBehaved(secured.url, token));
  });

  it("locks out a non-exempt address after maxAttempts failures; a client already in keeps being served", async () => {
    const secured = await startSecured({ auth: { rateLimit: { maxAttempts: 3, lockoutMs: 60_000, exemptLoopback: false } } });
    const client = await wellBehaved(secured.url, await tokenOf(secured));
    for (let attempt = 0; attempt < 3; attempt += 1) await failedConnect(secured.url, connectParams({ auth: { token: "guess" } }));
    const locked = await refusedUpgrade(secured.url);
    expect(locked.status).toBe(429);
    expect(locked.body.error.details.code).toBe("AUTH_RATE_LIMITED");
    await expectServed(client);
  });
});

describe("scopes follow the credential", () => {
  it('with auth mode "none" a client gets at most read and write, and no method that removes data', async () => {
    const secured = await startSecured({ auth: { mode: "none" } });
    expect(secured.gateway.tokenFile).toBeUndefined();
    await expect(fs.access(path.join(secured.stateDir, "gateway.token"))).rejects.toMatchObject({ code: "ENOENT" });
    const { client, hello } = await connectClient(secured.url, { auth: undefined, scopes: ["operator.read", "operator.write", "operator.admin"] });
    expect(hello.auth).toEqual({ role: "operator", scopes: ["operator.read", "operator.write"], method: "none" });
    for (const [method, params] of [
      ["sessions.delete", { key: "main" }],
      ["sessions.reset", { key: "main" }],
      ["workspaces.gc", { dryRun: true }],
    ] as const) {
      const res = await client.request(method, params);
      expect(res.error?.details, method).toMatchObject({ code: "MISSING_SCOPE", missingScope: "operator.admin" });
    }
    const archived = await client.request("sessions.delete", { key: "main", archivedOnly: true });
    expect(archived.error).toMatchObject({ code: "FORBIDDEN", details: { code: "CREDENTIAL_REQUIRED" } });
    await expectServed(client);
  });
});

describe("limits before authentication, enforced while reading", () => {
  it.skipIf(process.platform !== "linux")("keeps its peak RSS flat under 16 unauthenticated sockets sending 24 MiB frames: each is refused from its header (1009)", async () => {
    // A child gateway, so that its memory is measured alone: /proc/<pid>/status VmHWM is its peak RSS.
    const dir = await tempDir();
    const stateDir = path.join(dir, "state");
    // A long handshake timeout: on a loaded machine the flood must be refused by its size, never by the clock (1008).
    const gateway = { port: 0, handshakeTimeoutMs: 120_000 };
    const child = await spawnGatewayChild({ stateDir, gateway, workspace: { ephemeral: { root: path.join(dir, "ephemeral") }, gc: { intervalMs: 0 } } });
    const token = (await fs.readFile(path.join(stateDir, "gateway.token"), "utf8")).trim();
    const client = await wellBehaved(child.url, token);
    await expectServed(client);
    const before = await peakRssBytes(child.pid);
    const frame = Buffer.alloc(24 * 1024 * 1024, 0x20);
    // An all-zero mask (valid): ws then sends the one shared buffer as it is instead of masking 384 MiB on this side.
    const flood = await Promise.all(Array.from({ length: 16 }, () => openClient(child.url, { generateMask: (mask: Buffer) => void mask.fill(0) })));
    await Promise.all(flood.map((peer) => peer.nextEvent("connect.challenge")));
    for (const peer of flood) peer.ws.send(frame);
    for (const peer of flood) expect((await peer.closed).code).toBe(1009);
    const grown = (await peakRssBytes(child.pid)) - before;
    console.log(`[security] pre-auth flood (16 × 24 MiB): gateway peak RSS grew ${(grown / 2 ** 20).toFixed(1)} MiB`);
    // Buffering the frames would take 384 MiB; the budget in npm run bench is 20 MB.
    expect(grown).toBeLessThan(20 * 2 ** 20);
    await expectServed(client);
  });

  it("refuses upgrades past the unauthenticated cap (503, Retry-After) until the stalled ones time out", async () => {
    const secured = await startSecured({ maxUnauthenticatedConnections: 3, handshakeTimeoutMs: 1500 });
    const token = await tokenOf(secured);
    const client = await wellBehaved(secured.url, token);
    const stalled = await Promise.all([0, 1, 2].map(() => openClient(secured.url)));
    const full = await refusedUpgrade(secured.url);
    expect(full.status).toBe(503);
    expect(full.headers["retry-after"]).toBe("5");
    expect(full.body.error.details.code).toBe("TOO_MANY_CONNECTIONS");
    await expectServed(client);
    for (const peer of stalled) expect(await peer.closed).toEqual({ code: 1008, reason: "handshake timeout" });
    await expectServed(await wellBehaved(secured.url, token));
  });

  it("refuses upgrades past the total cap (503)", async () => {
    const secured = await startSecured({ maxConnections: 2 });
    const token = await tokenOf(secured);
    const clients = [await wellBehaved(secured.url, token), await wellBehaved(secured.url, token)];
    const full = await refusedUpgrade(secured.url);
    expect(full.status).toBe(503);
    expect(full.body.error.details.code).toBe("TOO_MANY_CONNECTIONS");
    for (const client of clients) await expectServed(client);
  });

  it("cuts a refused socket that never answers the close frame within about a second, freeing its place under maxConnections", async () => {
    const secured = await startSecured({ maxConnections: 2 });
    const token = await tokenOf(secured);
    const client = await wellBehaved(secured.url, token);
    const refused = await openClient(secured.url);
    await refused.nextEvent("connect.challenge");
    refused.sendJson({ type: "req", id: "bad", method: "connect", params: connectParams({ auth: { token: "guess" } }) });
    // Stop reading: the refusal and the close frame are never seen, so the close is never answered (ws would wait 30 s).
    (refused.ws as unknown as { _socket: net.Socket })._socket.pause();
    const started = Date.now();
    let admitted: TestClient | undefined;
    while (admitted === undefined && Date.now() - started < 5000) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      admitted = await wellBehaved(secured.url, token).catch(() => undefined);
    }
    // ws alone holds such a socket for 30 s; the gateway cuts it after REFUSED_CLOSE_GRACE_MS.
    expect(admitted, "a place under maxConnections within 5 s").toBeDefined();
    await expectServed(admitted as TestClient);
    await expectServed(client);
  });

  it("drops a connection whose HTTP upgrade request stalls past the handshake timeout", async () => {
    const secured = await startSecured({ handshakeTimeoutMs: 500 });
    const client = await wellBehaved(secured.url, await tokenOf(secured));
    const socket = net.connect(secured.gateway.port, "127.0.0.1");
    onTestFinished(() => void socket.destroy());
    socket.on("error", () => undefined);
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    socket.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n");
    const started = Date.now();
    let answer = "";
    socket.setEncoding("utf8").on("data", (chunk: string) => (answer += chunk));
    await new Promise<void>((resolve) => socket.once("close", () => resolve()));
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(Date.now() - started).toBeLessThan(10_000);
    await expectServed(client);
  });

  it("refuses a request past maxInFlightRequests (TOO_MANY_REQUESTS, retryable) and takes it again once answers went out", async () => {
    const secured = await startSecured({ maxInFlightRequests: 2 });
    const client = await wellBehaved(secured.url, await tokenOf(secured));
    // `agent` answers "accepted" at once and stays in flight until its final answer, after the run.
    const ids = ["slow-0", "slow-1"];
    const accepted = ids.map((id) => client.request("agent", { sessionKey: id, message: "/echo:sleep 1500 hi", idempotencyKey: id }, id));
    const refused = await client.request("health", {});
    expect(refused.error).toMatchObject({ code: "UNAVAILABLE", retryable: true, details: { code: "TOO_MANY_REQUESTS" } });
    for (const res of await Promise.all(accepted)) expect(res.payload).toMatchObject({ status: "accepted" });
    const finals = await Promise.all(ids.map((id) => client.next((frame) => frame.type === "res" && frame.id === id, 20_000)));
    for (const res of finals) expect(res).toMatchObject({ ok: true, payload: { status: "ok" } });
    await expectServed(client);
  });
});
