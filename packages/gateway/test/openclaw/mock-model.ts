/**
 * A loopback OpenAI-compatible model for the real OpenClaw: `GET /v1/models` and
 * `POST /v1/chat/completions` (SSE when `stream: true`) answering a fixed reply, so turns complete
 * without a network. Runs in the test process; stopped by `close()`.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

export const MOCK_MODEL_ID = "mock-model";

export interface MockModel {
  /** `http://127.0.0.1:<port>/v1` */
  readonly baseUrl: string;
  /** Chat completion requests answered so far. */
  readonly completions: () => number;
  close(): Promise<void>;
}

export async function startMockModel(reply = "ok"): Promise<MockModel> {
  let completions = 0;
  const server = createServer((req, res) => {
    const url = (req.url ?? "/").replace(/\/+$/, "");
    if (req.method === "GET" && url.endsWith("/models")) {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ object: "list", data: [{ id: MOCK_MODEL_ID, object: "model", created: 0, owned_by: "mock" }] }));
      return;
    }
    if (req.method !== "POST" || !url.endsWith("/chat/completions")) {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: `not found: ${req.method} ${url}` } }));
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      completions++;
      let body: { stream?: boolean; model?: string } = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as typeof body;
      } catch {
        // An unreadable body still gets the fixed reply.
      }
      const base = { id: `chatcmpl-mock-${completions}`, created: Math.floor(Date.now() / 1000), model: body.model ?? MOCK_MODEL_ID };
      const usage = { prompt_tokens: 10, completion_tokens: 1, total_tokens: 11 };
      if (body.stream !== true) {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ...base, object: "chat.completion", choices: [{ index: 0, message: { role: "assistant", content: reply }, finish_reason: "stop" }], usage }));
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      const send = (chunk: object): boolean => res.write(`data: ${JSON.stringify({ ...base, object: "chat.completion.chunk", ...chunk })}\n\n`);
      send({ choices: [{ index: 0, delta: { role: "assistant", content: reply }, finish_reason: null }] });
      send({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }], usage });
      res.end("data: [DONE]\n\n");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    completions: () => completions,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
