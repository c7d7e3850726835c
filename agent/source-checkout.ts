import type { CheckoutRequest } from "./git-checkout.js";

/**
 * Where a job's source comes from: a workspace checked out at the requested revision, and its
 * tree as a tar stream for the build. GitCheckout is the implementation; benchmarks that time only
 * our own code plug in an instant one.
 */
export interface SourceCheckout {
  checkout(req: CheckoutRequest): Promise<{ commit: string }>;
  archive(workspace: string, commit: string): NodeJS.ReadableStream;
}
