/**
 * The gateway token generated into the state directory on first start (`<stateDir>/gateway.token`),
 * so that auth is on by default with nothing to set up: the gateway writes it once, owner-only
 * (0600), and reuses it; the `ocgw` CLI on the same machine reads it. A file another user could
 * read, or one that is not a plain file of ours, is refused rather than trusted or repaired: its
 * secret may already be known.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { link, lstat, readFile, unlink, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { errnoCode } from "@ocgw/workspace";
import { GatewayError } from "../errors.ts";

/** The file's name inside the state directory. */
export const TOKEN_FILE_NAME = "gateway.token";
/** Random bytes in a generated token (base64url: 43 characters). */
export const TOKEN_BYTES = 32;

export interface TokenFile {
  readonly token: string;
  readonly path: string;
  /** True when this call generated it. */
  readonly created: boolean;
}

export function tokenFilePath(stateDir: string): string {
  return path.join(stateDir, TOKEN_FILE_NAME);
}

function insecure(file: string, why: string): GatewayError {
  return new GatewayError("AUTH_TOKEN_FILE", `The gateway token file ${file} ${why}`);
}

/** The token in `file`, checked: a regular file (not a link) of this user, unreadable by others, holding one token. */
async function readChecked(file: string): Promise<string> {
  const st = await lstat(file);
  if (!st.isFile()) throw insecure(file, "is not a regular file (a symbolic link or something else)");
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw insecure(file, `belongs to uid ${st.uid}, not to this user (uid ${uid})`);
  if (process.platform !== "win32" && (st.mode & 0o077) !== 0) {
    throw insecure(file, `can be read by other users (mode ${(st.mode & 0o777).toString(8).padStart(4, "0")})`);
  }
  const token = (await readFile(file, "utf8")).trim();
  if (token === "" || /\s/.test(token)) throw insecure(file, "does not hold one token (it is empty or has several words)");
  return token;
}

/** The token saved in `stateDir`; undefined when there is none. Rejects (AUTH_TOKEN_FILE) for a file it must not trust. */
export async function readTokenFile(stateDir: string): Promise<TokenFile | undefined> {
  const file = tokenFilePath(stateDir);
  try {
    return { token: await readChecked(file), path: file, created: false };
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined;
    throw error;
  }
}

/**
 * The token saved in `stateDir` (an existing directory), generated on first use. The new file
 * appears whole or not at all (written aside, then hard-linked into place), so two gateways that
 * start at once agree on one token.
 */
export async function ensureTokenFile(stateDir: string): Promise<TokenFile> {
  const existing = await readTokenFile(stateDir);
  if (existing !== undefined) return existing;
  const file = tokenFilePath(stateDir);
  const token = randomBytes(TOKEN_BYTES).toString("base64url");
  const aside = path.join(stateDir, `.${TOKEN_FILE_NAME}.${randomUUID()}`);
  await writeFile(aside, `${token}\n`, { mode: 0o600, flag: "wx" });
  try {
    await link(aside, file);
    return { token, path: file, created: true };
  } catch (error) {
    if (errnoCode(error) !== "EEXIST") throw error;
    return { token: await readChecked(file), path: file, created: false };
  } finally {
    await unlink(aside).catch(() => undefined);
  }
}
