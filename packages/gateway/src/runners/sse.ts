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
  const lineEnd = /\r\n?|\n/g;
  /** The unterminated line so far, in pieces: joined once it ends, so a long line costs its length, not its length squared. */
  let pieces: string[] = [];
  /** The last text ended with a CR: a LF that starts the next one completes that CRLF. */
  let skipLf = false;
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

  const endLine = (): void => {
    const text = pieces.length === 1 ? (pieces[0] as string) : pieces.join("");
    pieces = [];
    line(text);
  };

  /** Splits decoded text into lines; only the new text is searched, each character once. */
  const feed = (text: string): void => {
    let start = 0;
    if (skipLf && text !== "") {
      skipLf = false;
      if (text.startsWith("\n")) start = 1;
    }
    lineEnd.lastIndex = start;
    for (let match = lineEnd.exec(text); match !== null; match = lineEnd.exec(text)) {
      pieces.push(text.slice(start, match.index));
      start = lineEnd.lastIndex;
      if (match[0] === "\r" && start === text.length) skipLf = true;
      endLine();
    }
    if (start < text.length) pieces.push(text.slice(start));
  };

  return {
    push(chunk: Uint8Array): void {
      feed(utf8.decode(chunk, { stream: true }));
    },
    end(): void {
      feed(utf8.decode());
      if (pieces.length > 0) endLine();
      skipLf = false;
      dispatch();
    },
  };
}
