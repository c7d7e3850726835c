/**
 * Validation of repository URIs and refs that come from webhooks. Both sides use it: the coordinator
 * refuses bad input at intake, and the agent checks again before any git command sees it.
 */

const MAX_URI = 2048;
const MAX_REF = 1024;

/** Returns a problem description, or null when `uri` is an acceptable repository location. */
export function repositoryUriProblem(uri: string): string | null {
  if (uri.length === 0) return "is empty";
  if (uri.length > MAX_URI) return `is longer than ${MAX_URI} characters`;
  if (uri.startsWith("-")) return "must not start with '-'";
  // Control characters and whitespace have no place in a URI and confuse shells and git alike.
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u0020\u007f]/.test(uri)) return "contains whitespace or control characters";
  if (uri.startsWith("/")) {
    if (uri.split("/").includes("..")) return "must not contain '..' segments";
    return null;
  }
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)(.*)$/i.exec(uri);
  if (!m) return "must be an absolute path or a URI with scheme http, https, ssh or git";
  const scheme = (m[1] ?? "").toLowerCase();
  if (!["http", "https", "ssh", "git"].includes(scheme)) {
    return `has scheme '${scheme}'; allowed are http, https, ssh and git`;
  }
  const authority = m[2] ?? "";
  const host = authority.slice(authority.lastIndexOf("@") + 1);
  if (host.length === 0 || host.startsWith("-")) return "has no valid host";
  if ((m[3] ?? "").startsWith("/-")) return "has a path starting with '-'";
  return null;
}

/** Returns a problem description, or null when `ref` is a safe fully qualified git ref. */
export function refProblem(ref: string): string | null {
  if (ref.length === 0) return "is empty";
  if (ref.length > MAX_REF) return `is longer than ${MAX_REF} characters`;
  if (!ref.startsWith("refs/")) return "must start with 'refs/'";
  // The rules of git check-ref-format, plus no leading '-' in any component.
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u0020\u007f~^:?*[\\]/.test(ref)) return "contains a character git does not allow in refs";
  if (ref.includes("..") || ref.includes("@{") || ref.includes("//")) return "is not a valid git ref";
  if (ref.endsWith("/") || ref.endsWith(".") || ref.endsWith(".lock")) return "is not a valid git ref";
  if (ref.split("/").some((part) => part.startsWith(".") || part.startsWith("-"))) {
    return "has a component starting with '.' or '-'";
  }
  return null;
}

/** Returns a problem description, or null when `commit` is a full or abbreviated hex object name. */
export function commitProblem(commit: string): string | null {
  return /^[0-9a-f]{7,64}$/i.test(commit) ? null : "must be a hexadecimal commit hash of 7 to 64 digits";
}

/** A diff id from Harbormaster: a positive decimal number. */
export function diffIdProblem(id: string): string | null {
  return /^[1-9][0-9]{0,15}$/.test(id) ? null : "must be a positive number";
}

/** Target PHIDs look like `PHID-HMBT-5nl3hozrgttdnjf2sqxa`. */
export function targetPhidProblem(phid: string): string | null {
  return /^PHID-HMBT-[a-z0-9]{1,64}$/.test(phid) ? null : "must be a build target PHID (PHID-HMBT-…)";
}
