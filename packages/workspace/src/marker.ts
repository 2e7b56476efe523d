import { hostname } from "node:os";
import * as path from "node:path";
import { z } from "zod";
import type { FsPort } from "./fs-port.ts";
import type { DirIdentity } from "./types.ts";

/** The ownership marker's file name, inside each ephemeral workspace. */
export const MARKER_NAME = ".ocgw-lease.json";
/** Markers larger than this are not read (a marker is ~400 bytes). */
export const MARKER_MAX_BYTES = 8 * 1024;
const KEY_IN_MARKER_MAX = 1024;

const decimal = z.string().regex(/^\d{1,20}$/);

export const markerSchema = z.strictObject({
  v: z.literal(1),
  tool: z.literal("ocgw"),
  leaseId: z.uuid(),
  instanceId: z.string().regex(/^[a-z0-9-]{8,64}$/),
  /** The directory's own name, so a marker copied elsewhere does not validate. */
  name: z.string().min(1).max(255),
  /** The session key, cut to 1,024 characters (the full key's hash is in `name`). */
  key: z.string().max(KEY_IN_MARKER_MAX),
  agentId: z.string().min(1).max(64),
  createdAt: z.int().nonnegative(),
  dev: decimal,
  ino: decimal,
  pid: z.int().nonnegative(),
  host: z.string().max(255),
});

export type LeaseMarker = z.infer<typeof markerSchema>;

export interface MarkerInput {
  leaseId: string;
  instanceId: string;
  dir: string;
  key: string;
  agentId: string;
  createdAt: number;
  identity: DirIdentity;
}

export function buildMarker(input: MarkerInput): LeaseMarker {
  return {
    v: 1,
    tool: "ocgw",
    leaseId: input.leaseId,
    instanceId: input.instanceId,
    name: path.basename(input.dir),
    key: input.key.slice(0, KEY_IN_MARKER_MAX),
    agentId: input.agentId,
    createdAt: input.createdAt,
    dev: input.identity.dev,
    ino: input.identity.ino,
    pid: process.pid,
    host: hostname(),
  };
}

/** Writes the marker with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600: never through a planted link, never over a file. */
export async function writeMarker(fs: FsPort, dir: string, marker: LeaseMarker): Promise<void> {
  const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
  const handle = await fs.promises.open(path.join(dir, MARKER_NAME), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  try {
    await handle.writeFile(JSON.stringify(marker), "utf8");
  } finally {
    await handle.close();
  }
}

export type MarkerReadResult = { ok: true; marker: LeaseMarker } | { ok: false; reason: string };

/**
 * Reads a marker without following links and with a size cap, then validates it strictly.
 * Never throws: anything unreadable is a reason, and the caller reports it.
 */
export async function readMarker(fs: FsPort, dir: string): Promise<MarkerReadResult> {
  const { O_RDONLY, O_NOFOLLOW } = fs.constants;
  let handle;
  try {
    handle = await fs.promises.open(path.join(dir, MARKER_NAME), O_RDONLY | O_NOFOLLOW);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ENOENT") return { ok: false, reason: "no marker" };
    if (code === "ELOOP" || code === "ENOTDIR") return { ok: false, reason: "marker is a symlink" };
    return { ok: false, reason: `marker unreadable (${code ?? "error"})` };
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) return { ok: false, reason: "marker is not a regular file" };
    if (st.size > MARKER_MAX_BYTES) return { ok: false, reason: `marker larger than ${MARKER_MAX_BYTES} bytes` };
    const buffer = Buffer.alloc(MARKER_MAX_BYTES + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > MARKER_MAX_BYTES) return { ok: false, reason: `marker larger than ${MARKER_MAX_BYTES} bytes` };
    let json: unknown;
    try {
      json = JSON.parse(buffer.subarray(0, bytesRead).toString("utf8"));
    } catch {
      return { ok: false, reason: "marker is not JSON" };
    }
    const parsed = markerSchema.safeParse(json);
    if (!parsed.success) return { ok: false, reason: "marker does not match the schema" };
    return { ok: true, marker: parsed.data };
  } catch (error) {
    return { ok: false, reason: `marker unreadable (${(error as { code?: string }).code ?? "error"})` };
  } finally {
    await handle.close();
  }
}
