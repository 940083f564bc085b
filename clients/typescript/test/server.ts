/**
 * The real `ledger` binary for the shared cases, as api/tests/common starts
 * it: `ledger serve` on a free loopback port with a manual clock, on a data
 * directory that outlives one process (an outage is a stop and a start).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import * as readline from "node:readline";

export const OPERATOR = "op-test-operator-token-0123456789abcdef";
const AUDITOR = "au-test-auditor-token-0123456789abcdefg";
export const CLOCK_START = "2026-01-01T00:00:00Z";
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;
/** Lines of server output kept for a failure message. */
const OUTPUT_LINES_MAX = 400;

export class LedgerServer {
  private child: ChildProcess | null = null;
  base = "";
  readonly output: string[] = [];

  constructor(
    private readonly binary: string,
    private readonly dataDir: string,
    private readonly webhookSecret: string,
  ) {}

  private keep(line: string): void {
    this.output.push(line);
    if (this.output.length > OUTPUT_LINES_MAX) this.output.shift();
  }

  async start(): Promise<void> {
    const env: NodeJS.ProcessEnv = { ...process.env, LEDGER_OPERATOR_TOKEN: OPERATOR, LEDGER_AUDITOR_TOKEN: AUDITOR,
      LEDGER_CHECKPOINT_INTERVAL_SECONDS: "0", STRIPE_WEBHOOK_SECRET: this.webhookSecret, RUST_LOG: "warn", NO_COLOR: "1" };
    delete env.DATABASE_URL;
    const child = spawn(this.binary, ["serve", "--listen", "127.0.0.1:0", "--clock", `manual:${CLOCK_START}`, "--data-dir", this.dataDir],
      { env, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    readline.createInterface({ input: child.stderr! }).on("line", (l) => this.keep(`stderr: ${l}`));
    const address = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the server did not start:\n${this.output.join("\n")}`)), START_TIMEOUT_MS);
      child.on("exit", (code) => reject(new Error(`the server exited (${code}):\n${this.output.join("\n")}`)));
      readline.createInterface({ input: child.stdout! }).on("line", (line) => {
        this.keep(`stdout: ${line}`);
        const m = /^ledger listening on http:\/\/(\S+)/.exec(line.trim());
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
    });
    this.base = `http://${address}`;
    for (let i = 0; i < 600; i++) {
      const ok = await fetch(`${this.base}/health`).then((r) => r.status === 200, () => false);
      if (ok) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("the server never answered /health");
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child === null || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  /** `ledger <args…>` on this server's data directory (stopped), as an operator runs it; throws unless it exits 0. */
  async cli(args: string[]): Promise<void> {
    const env: NodeJS.ProcessEnv = { ...process.env, LEDGER_OPERATOR_TOKEN: OPERATOR, LEDGER_AUDITOR_TOKEN: AUDITOR, NO_COLOR: "1" };
    delete env.DATABASE_URL;
    const child = spawn(this.binary, [...args, "--clock", `manual:${CLOCK_START}`, "--data-dir", this.dataDir], { env, stdio: ["ignore", "pipe", "pipe"] });
    const lines: string[] = [];
    readline.createInterface({ input: child.stderr! }).on("line", (l) => lines.push(l));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    if (code !== 0) throw new Error(`ledger ${args.join(" ")} exited ${code}:\n${lines.join("\n")}`);
  }

  async call(method: "GET" | "POST", path: string, token: string | null, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
    const response = await fetch(`${this.base}${path}`, {
      method,
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await response.text();
    let json: any = null;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    return { status: response.status, json };
  }

  async expect(method: "GET" | "POST", path: string, token: string | null, body: unknown, status: number): Promise<any> {
    const reply = await this.call(method, path, token, body);
    if (reply.status !== status) throw new Error(`${method} ${path}: expected ${status}, got ${reply.status}: ${JSON.stringify(reply.json)}`);
    return reply.json;
  }

  /** A Stripe webhook, signed as Stripe signs (t=…,v1=HMAC-SHA256(secret, "t.body")). */
  async webhook(body: string): Promise<void> {
    const t = Math.floor(Date.now() / 1000);
    const v1 = createHmac("sha256", this.webhookSecret).update(`${t}.${body}`).digest("hex");
    const reply = await this.call("POST", "/api/v1/webhooks/stripe", null, body, { "stripe-signature": `t=${t},v1=${v1}` });
    if (reply.status !== 200) throw new Error(`webhook: ${reply.status} ${JSON.stringify(reply.json)}`);
  }
}

export interface Customer {
  org: string;
  subscription: string;
  key: string;
  admin: string;
}

/** An organization with a starter subscription from 2026-01-01 and an admin token. */
export async function customer(s: LedgerServer, name: string): Promise<Customer> {
  const org = (await s.expect("POST", "/api/v1/organizations", OPERATOR, { name }, 201)).id as string;
  const admin = (await s.expect("POST", `/api/v1/organizations/${org}/tokens`, OPERATOR, { role: "admin" }, 201)).token as string;
  const body = { organizationId: org, tier: "starter", startDate: "2026-01-01", autoRenew: true };
  const created = await s.expect("POST", "/api/v1/subscriptions", OPERATOR, body, 201);
  return { org, subscription: created.subscriptionId, key: created.licenseKey, admin };
}
