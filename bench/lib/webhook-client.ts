/** Posts Harbormaster webhooks over kept-alive connections, timing each on the monotonic clock. */
import { Agent, request } from "node:http";

export interface WebhookAnswer {
  status: number;
  jobId: number;
  /** process.hrtime.bigint() just before the request was written and when the answer was read. */
  sentNs: bigint;
  answeredNs: bigint;
}

/** Harbormaster percent-encodes variables except '/'. */
export const enc = (v: string): string => encodeURIComponent(v).replace(/%2F/g, "/");

export class WebhookClient {
  private readonly agent: Agent;
  private readonly host: string;
  private readonly port: number;

  constructor(baseUrl: string, sockets = 8) {
    const u = new URL(baseUrl);
    this.host = u.hostname;
    this.port = Number(u.port);
    this.agent = new Agent({ keepAlive: true, maxSockets: sockets });
  }

  post(pathAndQuery: string): Promise<WebhookAnswer> {
    return new Promise((resolve, reject) => {
      const sentNs = process.hrtime.bigint();
      const req = request(
        {
          host: this.host,
          port: this.port,
          path: pathAndQuery,
          method: "POST",
          agent: this.agent,
          headers: { "content-type": "application/x-www-form-urlencoded", "content-length": "0" },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const answeredNs = process.hrtime.bigint();
            const text = Buffer.concat(chunks).toString("utf8");
            let jobId = -1;
            try {
              jobId = Number((JSON.parse(text) as { jobId?: unknown }).jobId ?? -1);
            } catch {
              // reported through the status below
            }
            if (res.statusCode !== 202 && res.statusCode !== 200) {
              reject(new Error(`webhook answered ${res.statusCode ?? "?"}: ${text.slice(0, 300)}`));
              return;
            }
            resolve({ status: res.statusCode, jobId, sentNs, answeredNs });
          });
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end();
    });
  }

  /** Posts every query with at most `concurrency` requests in flight. */
  async postAll(queries: string[], concurrency: number): Promise<WebhookAnswer[]> {
    const answers: WebhookAnswer[] = new Array<WebhookAnswer>(queries.length);
    let next = 0;
    const worker = async () => {
      while (next < queries.length) {
        const i = next++;
        answers[i] = await this.post(queries[i] as string);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, queries.length) }, worker));
    return answers;
  }

  close(): void {
    this.agent.destroy();
  }
}

/** GET a JSON document (the coordinator's read API). */
export async function getJson(url: string): Promise<Record<string, unknown>> {
  const res = await fetch(url);
  return (await res.json()) as Record<string, unknown>;
}
