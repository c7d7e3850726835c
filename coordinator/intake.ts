import {
  commitProblem,
  diffIdProblem,
  refProblem,
  repositoryUriProblem,
  targetPhidProblem,
} from "../protocol/validate.js";
import type { NewJob } from "./job-store.js";

export type IntakeResult = { ok: true; job: NewJob } | { ok: false; problems: string[] };

const LABEL = /^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,63}$/;
const META_KEYS = [
  "diff",
  "revision",
  "build",
  "buildphid",
  "buildable",
  "project",
  "author",
  "repo",
] as const;
const MAX_META = 512;

function labelsFrom(raw: string, problems: string[]): string[] {
  if (raw.trim() === "") return [];
  const labels = raw.split(",").map((l) => l.trim());
  for (const l of labels)
    if (!LABEL.test(l)) problems.push(`labels: '${l.slice(0, 64)}' is not a valid label`);
  return [...new Set(labels)].sort();
}

function metaFrom(q: URLSearchParams, extra: Record<string, string>): Record<string, string> {
  const meta: Record<string, string> = {};
  for (const k of META_KEYS) {
    const v = q.get(k);
    if (v) meta[k] = v.slice(0, MAX_META);
  }
  for (const [k, v] of Object.entries(extra)) if (v) meta[k] = v.slice(0, MAX_META);
  return meta;
}

function allowed(uri: string, allowList: string[]): boolean {
  return allowList.length === 0 || allowList.some((prefix) => uri.startsWith(prefix));
}

function check(problems: string[], name: string, problem: string | null): void {
  if (problem) problems.push(`${name}: ${problem}`);
}

/**
 * `/harbormaster?target=&staging=&ref=&diff=&revision=&commit=&repository=&build=&labels=`.
 * A diff build gives staging + ref; a commit build gives repository + commit.
 */
export function parseHarbormasterHook(q: URLSearchParams, allowList: string[]): IntakeResult {
  const problems: string[] = [];
  const target = q.get("target") ?? "";
  check(problems, "target", targetPhidProblem(target));
  const staging = q.get("staging") ?? "";
  const repository = q.get("repository") ?? q.get("repo") ?? "";
  const ref = q.get("ref") ?? "";
  const commit = q.get("commit") ?? "";
  let repositoryUri = "";
  if (staging !== "" || ref !== "") {
    repositoryUri = staging;
    check(problems, "staging", repositoryUriProblem(staging));
    check(problems, "ref", refProblem(ref));
    if (commit !== "") check(problems, "commit", commitProblem(commit));
  } else if (repository !== "" || commit !== "") {
    repositoryUri = repository;
    check(problems, "repository", repositoryUriProblem(repository));
    check(problems, "commit", commitProblem(commit));
  } else {
    problems.push("staging and ref (a diff) or repository and commit (a commit) are required");
  }
  if (repositoryUri && !repositoryUriProblem(repositoryUri) && !allowed(repositoryUri, allowList)) {
    problems.push("repository: not in the list of allowed repositories");
  }
  const labels = labelsFrom(q.get("labels") ?? "", problems);
  if (problems.length > 0) return { ok: false, problems };
  // With a staging ref the tag decides what is built; the commit is only informative there.
  const useRef = ref !== "";
  return {
    ok: true,
    job: {
      targetPhid: target,
      repositoryUri,
      ref: useRef ? ref : "",
      commit: useRef ? "" : commit,
      labels,
      meta: metaFrom(q, useRef && commit ? { commit } : {}),
    },
  };
}

/**
 * The Buildbot-era form existing installs use, unchanged:
 * `/change_hook?project=&repository=<staging uri>&revision=<diff id>&PHID=<target phid>&author=&comments=`.
 */
export function parseChangeHook(q: URLSearchParams, allowList: string[]): IntakeResult {
  const problems: string[] = [];
  const target = q.get("PHID") ?? "";
  check(problems, "PHID", targetPhidProblem(target));
  const repositoryUri = q.get("repository") ?? "";
  check(problems, "repository", repositoryUriProblem(repositoryUri));
  const revision = q.get("revision") ?? "";
  check(problems, "revision", diffIdProblem(revision));
  if (repositoryUri && !repositoryUriProblem(repositoryUri) && !allowed(repositoryUri, allowList)) {
    problems.push("repository: not in the list of allowed repositories");
  }
  const labels = labelsFrom(q.get("labels") ?? "", problems);
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    job: {
      targetPhid: target,
      repositoryUri,
      ref: `refs/tags/phabricator/diff/${revision}`,
      commit: "",
      labels,
      meta: { diff: revision, ...metaFrom(q, {}) },
    },
  };
}
