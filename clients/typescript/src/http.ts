/** The client's HTTP: bounded in time and size, no redirects (one would send the license key elsewhere). */

/** The largest answer read; the server's are a few KiB. */
export const RESPONSE_BYTES_MAX = 256 * 1024;
/** How much of an error answer is kept. */
export const ERROR_BODY_CHARS_MAX = 4096;

export interface Answer {
  status: number;
  retryAfterSeconds: number | null;
  /** null when the body was cut off or larger than RESPONSE_BYTES_MAX. */
  body: Buffer | null;
}

/** Thrown when the server could not be reached at all. */
export class Unreachable extends Error {}

async function readCapped(response: Response): Promise<Buffer | null> {
  if (response.body === null) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      total += chunk.length;
      if (total > RESPONSE_BYTES_MAX) return null;
      chunks.push(Buffer.from(chunk));
    }
  } catch {
    return null;
  }
  return Buffer.concat(chunks);
}

export async function request(
  method: "GET" | "POST",
  url: string,
  body: unknown,
  timeoutMs: number,
  version: string,
): Promise<Answer> {
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      redirect: "manual",
      signal: AbortSignal.timeout(timeoutMs),
      headers: { "content-type": "application/json", "user-agent": `ledger-client-ts/${version}` },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    const cause = (e as { cause?: { message?: string } }).cause?.message;
    throw new Unreachable(`the server could not be reached: ${(e as Error).message}${cause ? `: ${cause}` : ""}`);
  }
  const retry = response.headers.get("retry-after");
  const retryAfterSeconds = retry !== null && /^\s*\d+\s*$/.test(retry) ? Number(retry) : null;
  return { status: response.status, retryAfterSeconds, body: await readCapped(response) };
}

export function truncated(body: Buffer | null): string {
  return body === null ? "" : body.toString("utf8").slice(0, ERROR_BODY_CHARS_MAX);
}
