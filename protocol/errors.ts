/**
 * The one error base class of the project: a stable string `code` that callers branch on and an
 * optional `cause`. Subclasses exist only where a caller needs to tell them apart.
 */
export class PdciError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PdciError";
    this.code = code;
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
