/**
 * Every error @ocgw/workspace throws or reports carries one of these stable codes. The table is
 * the single source of truth: `docs/errors.md` lists the same codes and a test keeps them in step.
 */
export const workspaceErrorCatalog = {
  WS_INVALID_OPTIONS: {
    meaning: "A provider or collector was constructed with missing, invalid or conflicting options.",
    fix: "Correct the option named in the message; each option's type and default is documented on its interface.",
  },
  WS_INVALID_KEY: {
    meaning: "A session key was not a non-empty string of at most 65,536 characters.",
    fix: "Pass the session key as a plain, non-empty string; keys are names, never paths.",
  },
  WS_ROOT_UNSAFE: {
    meaning: "The ephemeral root exists but is a symlink, not a directory, owned by another user, or open to group/other and could not be tightened.",
    fix: "Remove or fix the path named in the message (it must be a real directory owned by this user with mode 0700), or point workspace.ephemeral.root elsewhere.",
  },
  WS_ROOT_UNAVAILABLE: {
    meaning: "The ephemeral root could not be created or inspected (missing parent, read-only or full file system, no permission).",
    fix: "Make the parent directory writable for this user, or set workspace.ephemeral.root (or TMPDIR) to an absolute, writable directory.",
  },
  WS_CREATE_FAILED: {
    meaning: "A workspace directory could not be created.",
    fix: "Check free space and permissions of the root named in the message; nothing was left behind.",
  },
  WS_MARKER_FAILED: {
    meaning: "The ownership marker of a new workspace could not be written; the new directory was removed again (the message says if it had to be left for the collector instead).",
    fix: "Check free space and permissions of the root named in the message; the request can be retried.",
  },
  WS_SEED_FAILED: {
    meaning: "Bootstrap or seed files could not be written into a new workspace; it was removed again (the message says if it had to be left for the collector instead).",
    fix: "Check free space, and that the seed directory named in the message is readable; the request can be retried.",
  },
  WS_OUTSIDE_ROOT: {
    meaning: "A path handed to removal is not inside the provider's root, so it was refused.",
    fix: "Only release leases this provider created; nothing was deleted.",
  },
  WS_IDENTITY_CHANGED: {
    meaning: "The directory at a lease's path is no longer the one that was created (device/inode differ, or it became a symlink or file), so it was refused.",
    fix: "Something replaced the workspace; inspect the path by hand. Nothing was deleted.",
  },
  WS_REMOVE_FAILED: {
    meaning: "A workspace was moved to a .trash-* entry inside the root but could not be deleted completely.",
    fix: "Nothing is needed: the collector retries trash entries; if it keeps failing, check permissions inside the trash entry.",
  },
  WS_GC_BUSY: {
    meaning: "Another collector holds the collection lock of this root.",
    fix: "Wait for the other collection to finish and retry; only one collector runs per root at a time.",
  },
  WS_INSTANCE_LOCK_FAILED: {
    meaning: "The instance liveness lock could not be taken or was lost.",
    fix: "Check that the root's .instances directory is writable and not on a file system that drops mtime updates.",
  },
  WS_LEASE_MISMATCH: {
    meaning: "A lease was handed to a provider that did not create it (other kind or other root).",
    fix: "Release a lease through the provider that acquired it.",
  },
  WS_LIMIT_REACHED: {
    meaning: "The provider holds its maximum number of live leases.",
    fix: "Release idle sessions, or raise workspace.ephemeral.maxLeases.",
  },
  WS_CLOSED: {
    meaning: "The provider was closed and takes no new leases.",
    fix: "Create a new provider; a closed one only releases.",
  },
} as const satisfies Record<string, { meaning: string; fix: string }>;

export type WorkspaceErrorCode = keyof typeof workspaceErrorCatalog;

export interface WorkspaceErrorOptions {
  cause?: unknown;
  /** The file-system path the error is about, when there is one. */
  path?: string;
  /** Overrides the catalogue's "how to fix" sentence when the caller knows better. */
  fix?: string;
}

/** The one error class of @ocgw/workspace: a stable `code`, a message that says how to fix it, a `cause`. */
export class WorkspaceError extends Error {
  override readonly name = "WorkspaceError";
  readonly code: WorkspaceErrorCode;
  readonly path: string | undefined;

  constructor(code: WorkspaceErrorCode, detail: string, options: WorkspaceErrorOptions = {}) {
    const fix = options.fix ?? workspaceErrorCatalog[code].fix;
    super(`${detail}. ${fix}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.path = options.path;
  }
}

export function isWorkspaceError(value: unknown, code?: WorkspaceErrorCode): value is WorkspaceError {
  return value instanceof WorkspaceError && (code === undefined || value.code === code);
}

/** The errno code of a Node system error, if it is one. */
export function errnoCode(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "code" in error) {
    const code = (error as { code: unknown }).code;
    return typeof code === "string" ? code : undefined;
  }
  return undefined;
}

/** `message` of anything thrown, for embedding in a detail sentence. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
