/**
 * Docker's build and push endpoints answer 200 and then stream JSON events; a failure arrives as an
 * event carrying `error` / `errorDetail`, not as an HTTP error. This turns such a stream into text for
 * the job log and the first error message, if any.
 */
import type { Writable } from "node:stream";
import type Dockerode from "dockerode";

interface ProgressEvent {
  stream?: unknown;
  status?: unknown;
  id?: unknown;
  progress?: unknown;
  error?: unknown;
  errorDetail?: { message?: unknown };
}

/** The error text an event carries, or null. */
export function eventError(event: ProgressEvent): string | null {
  if (typeof event.error === "string" && event.error !== "") return event.error;
  const detail = event.errorDetail?.message;
  return typeof detail === "string" && detail !== "" ? detail : null;
}

/** The log text for an event: build output as is, status lines without their progress bars. */
export function eventText(event: ProgressEvent): string {
  if (typeof event.stream === "string") return event.stream;
  const error = eventError(event);
  if (error !== null) return `error: ${error}\n`;
  if (typeof event.status === "string" && event.progress === undefined) {
    const id = typeof event.id === "string" ? `${event.id}: ` : "";
    return `${id}${event.status}\n`;
  }
  return "";
}

/**
 * Follows `stream` to its end, writing each event's text to `output`. Resolves with the first error
 * text of any event (null when there was none); rejects when the stream itself fails.
 */
export function followDockerProgress(
  docker: Dockerode,
  stream: NodeJS.ReadableStream,
  output: Writable,
): Promise<string | null> {
  return new Promise((resolve, reject) => {
    let failure: string | null = null;
    docker.modem.followProgress(
      stream,
      (err) => (err ? reject(err) : resolve(failure)),
      (event: ProgressEvent) => {
        const text = eventText(event);
        if (text !== "") output.write(text);
        failure ??= eventError(event);
      },
    );
  });
}
