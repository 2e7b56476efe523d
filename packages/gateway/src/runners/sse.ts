/**
 * A minimal decoder for `text/event-stream` bodies (the parts chat/completions streaming uses):
 * bytes in any chunking (a chunk may end inside a line or inside a UTF-8 sequence), lines ended by
 * LF, CRLF or CR, `data:` fields joined with "\n" and dispatched at each blank line, comments and
 * other fields ignored. `end()` dispatches an event left unterminated at the end of the body.
 */
export interface SseDecoder {
  push(chunk: Uint8Array): void;
  end(): void;
}

export function createSseDecoder(onData: (data: string) => void): SseDecoder {
  const utf8 = new TextDecoder("utf-8");
  let buffer = "";
  let data: string[] = [];

  const dispatch = (): void => {
    if (data.length === 0) return;
    const joined = data.join("\n");
    data = [];
    onData(joined);
  };

  const line = (text: string): void => {
    if (text === "") {
      dispatch();
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon === -1 ? text : text.slice(0, colon);
    if (field !== "data") return;
    let value = colon === -1 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    data.push(value);
  };

  const drain = (final: boolean): void => {
    let start = 0;
    for (;;) {
      const lf = buffer.indexOf("\n", start);
      const cr = buffer.indexOf("\r", start);
      const at = cr !== -1 && (lf === -1 || cr < lf) ? cr : lf;
      if (at === -1) break;
      // A CR at the very end may be the first half of a CRLF still on its way.
      if (at === cr && at === buffer.length - 1 && !final) break;
      const next = at === cr && buffer[at + 1] === "\n" ? at + 2 : at + 1;
      line(buffer.slice(start, at));
      start = next;
    }
    buffer = buffer.slice(start);
  };

  return {
    push(chunk: Uint8Array): void {
      buffer += utf8.decode(chunk, { stream: true });
      drain(false);
    },
    end(): void {
      buffer += utf8.decode();
      drain(true);
      if (buffer !== "") line(buffer);
      buffer = "";
      dispatch();
    },
  };
}
