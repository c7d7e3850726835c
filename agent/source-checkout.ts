import type { CheckoutRequest } from "./git-checkout.js";

/**
 * Where a job's source comes from: the requested revision fetched into a cache, its tree as a tar
 * stream for the build, and a workspace checked out at it (made while the image builds). GitCheckout is the implementation; benchmarks that time only
 * our own code plug in an instant one.
 */
export interface SourceCheckout {
  /** Fetches the revision into a cache; returns its commit. */
  fetch(req: CheckoutRequest): Promise<{ commit: string }>;
  /** Checks a fetched commit out into `req.workspace`. */
  materialize(req: CheckoutRequest, commit: string): Promise<void>;
  /** The tree of a fetched commit as a tar stream (the build context), without a workspace. */
  archiveFromCache(repositoryUri: string, commit: string): NodeJS.ReadableStream;
}
