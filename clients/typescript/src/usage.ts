/**
 * UsageReporter: a durable local queue of usage reports, sent in order when
 * the server can be reached (the Rust client's `usage` module, same files
 * and rules).
 *
 * Each report is one file in `stateDir/usage/`, fsynced before enqueue
 * returns, named by a zero-padded sequence number so the queue keeps its
 * order across restarts. A file is deleted only after the server
 * acknowledged it (a resend after a crash is harmless: the server replaces
 * a deployment's report for the same day). A flush stops at the first
 * report it could not deliver (network, 5xx, 408, 429) and keeps it and
 * all later ones; a report the server refuses as invalid (another 4xx, or a
 * 429 naming `reports_per_day`) is moved to `usage/rejected/` with the
 * answer, and the flush goes on. The queue holds at most `usageQueueMax`.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { makeConfig, type Config, type ConfigInput } from "./config";
import { ClientError } from "./errors";
import * as files from "./files";
import { Unreachable, request, truncated } from "./http";
import { formatRfc3339Micros } from "./time";

export const USAGE_DIR = "usage";
export const REJECTED_DIR = "rejected";
/** The largest value of any metric, as the server bounds it. */
const METRIC_VALUE_MAX = 1_000_000_000_000;
const REPORTS_PER_DAY = "reports_per_day";

/** One day's usage of this deployment (the seed's UsageReportRequest). */
export interface UsageReport {
  /** The day covered, YYYY-MM-DD (UTC). */
  reportingPeriod: string;
  metrics: UsageMetrics;
}

export interface UsageMetrics {
  activeUsers: number;
  /** At most two decimal places. */
  dataVolumeGB: number;
  apiCallsCount: number;
  /** At most two decimal places. */
  trainingHours: number;
}

export interface FlushOutcome {
  sent: number;
  rejected: number;
  remaining: number;
  retryAfterSeconds: number | null;
  stopped: string | null;
}

/** Refuses locally what the server would refuse, so an invalid report never enters the queue. */
export function checkReport(report: UsageReport): void {
  const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(report.reportingPeriod);
  if (!day || new Date(`${report.reportingPeriod}T00:00:00Z`).toISOString().slice(0, 10) !== report.reportingPeriod) {
    throw new ClientError("invalid_report", "invalid usage report: reportingPeriod is not a YYYY-MM-DD day");
  }
  const m = report.metrics;
  const values: [string, unknown, boolean][] = [
    ["activeUsers", m.activeUsers, true],
    ["dataVolumeGB", m.dataVolumeGB, false],
    ["apiCallsCount", m.apiCallsCount, true],
    ["trainingHours", m.trainingHours, false],
  ];
  for (const [name, value, whole] of values) {
    const ok = typeof value === "number" && Number.isFinite(value) && value >= 0 && value <= METRIC_VALUE_MAX &&
      (whole ? Number.isSafeInteger(value) : /^\d+(\.\d{1,2})?$/.test(String(value)));
    if (!ok) {
      const rule = whole ? "a whole number" : "a number with at most two decimals";
      throw new ClientError("invalid_report", `invalid usage report: ${name} must be ${rule} from 0 to ${METRIC_VALUE_MAX}`);
    }
  }
}

function fileName(seq: number): string {
  return `${String(seq).padStart(20, "0")}.json`;
}

function parseFileName(name: string): number | null {
  const m = /^(\d{20})\.json$/.exec(name);
  return m ? Number(m[1]) : null;
}

/** The reports in `dir`, in queue order; removes crash leftovers. */
function list(dir: string): [number, string][] {
  const out: [number, string][] = [];
  for (const name of fs.readdirSync(dir)) {
    if (files.isTemporary(name)) fs.rmSync(path.join(dir, name), { force: true });
    const seq = parseFileName(name);
    if (seq !== null) out.push([seq, path.join(dir, name)]);
  }
  return out.sort((a, b) => a[0] - b[0]);
}

type Sent = { kind: "ack" } | { kind: "refused"; status: number | null; answer: unknown } | { kind: "not_delivered"; reason: string; retryAfterSeconds: number | null };

export class UsageReporter {
  readonly config: Config;

  /** Never shows the license key (see makeConfig). */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `UsageReporter { deploymentId: ${JSON.stringify(this.config.deploymentId)}, stateDir: ${JSON.stringify(this.config.stateDir)} }`;
  }
  private readonly dir: string;
  readonly rejectedDir: string;
  private next: number;
  private count: number;
  private flushing: Promise<FlushOutcome> | null = null;

  /** Opens (creating) `stateDir/usage/` and counts what is queued there. */
  constructor(input: ConfigInput) {
    this.config = makeConfig(input);
    this.dir = path.join(this.config.stateDir, USAGE_DIR);
    this.rejectedDir = path.join(this.dir, REJECTED_DIR);
    files.createDir(this.rejectedDir);
    const queued = list(this.dir);
    const highest = Math.max(0, queued.at(-1)?.[0] ?? 0, list(this.rejectedDir).at(-1)?.[0] ?? 0);
    this.next = highest + 1;
    this.count = queued.length;
  }

  /** How many reports wait in the queue. */
  pending(): number {
    return this.count;
  }

  /** Queues `report`: on disk (fsynced) when this returns. Refused when full or invalid. */
  enqueue(report: UsageReport): number {
    checkReport(report);
    if (this.count >= this.config.usageQueueMax) {
      throw new ClientError("queue_full", `the usage queue already holds ${this.config.usageQueueMax} reports; flush before enqueueing more`);
    }
    const seq = this.next;
    const stored = { version: 1, deploymentId: this.config.deploymentId, report: { reportingPeriod: report.reportingPeriod, metrics: { ...report.metrics } } };
    files.writeAtomic(path.join(this.dir, fileName(seq)), JSON.stringify(stored));
    this.next += 1;
    this.count += 1;
    return seq;
  }

  /** Sends the queued reports in order (one flush at a time). */
  flush(): Promise<FlushOutcome> {
    if (this.flushing === null) {
      this.flushing = this.flushOnce().finally(() => {
        this.flushing = null;
      });
    }
    return this.flushing;
  }

  private async flushOnce(): Promise<FlushOutcome> {
    const outcome: FlushOutcome = { sent: 0, rejected: 0, remaining: 0, retryAfterSeconds: null, stopped: null };
    for (const [seq, file] of list(this.dir)) {
      const bytes = files.readOptional(file);
      if (bytes === null) continue;
      let stored: { deploymentId: string; report: UsageReport };
      try {
        stored = JSON.parse(bytes.toString("utf8"));
        checkReport(stored.report);
      } catch (e) {
        this.reject(seq, file, truncated(bytes), null, `the queued file is not a report: ${(e as Error).message}`);
        outcome.rejected += 1;
        continue;
      }
      const sent = await this.send(stored.deploymentId, stored.report);
      if (sent.kind === "ack") {
        files.removeDurably(file);
        this.count -= 1;
        outcome.sent += 1;
      } else if (sent.kind === "refused") {
        this.reject(seq, file, stored, sent.status, sent.answer);
        outcome.rejected += 1;
      } else {
        outcome.stopped = sent.reason;
        outcome.retryAfterSeconds = sent.retryAfterSeconds;
        break;
      }
    }
    outcome.remaining = this.count;
    return outcome;
  }

  private async send(deploymentId: string, report: UsageReport): Promise<Sent> {
    const config = this.config;
    const body = { licenseKey: config.licenseKey, metrics: report.metrics, reportingPeriod: report.reportingPeriod, deploymentId };
    let answer;
    try {
      answer = await request("POST", `${config.baseUrl}/api/v1/usage/report`, body, config.requestTimeoutMs, config.clientVersion);
    } catch (e) {
      if (e instanceof Unreachable) return { kind: "not_delivered", reason: e.message, retryAfterSeconds: null };
      throw e;
    }
    const parsed = parseJson(answer.body);
    const status = answer.status;
    if (status === 429 && (parsed as { limit?: unknown } | null)?.limit === REPORTS_PER_DAY) {
      return { kind: "refused", status, answer: parsed };
    }
    if (status === 429 || status === 408 || status >= 500 || status < 200 || (status >= 300 && status < 400)) {
      const retryAfterSeconds = status === 429 ? answer.retryAfterSeconds : null;
      return { kind: "not_delivered", reason: `the server answered ${status}`, retryAfterSeconds };
    }
    if (answer.body === null) return { kind: "not_delivered", reason: "the answer was cut off", retryAfterSeconds: null };
    if (status >= 400) return { kind: "refused", status, answer: parsed ?? truncated(answer.body) };
    // Only the contract's acknowledgement removes a report.
    const acknowledged = (parsed as { acknowledged?: unknown } | null)?.acknowledged;
    if (acknowledged === true) return { kind: "ack" };
    if (acknowledged === false) return { kind: "refused", status, answer: parsed };
    return { kind: "not_delivered", reason: `the server answered ${status} without an acknowledgement`, retryAfterSeconds: null };
  }

  /** Writes the refusal into rejected/ first, then removes the queued file. */
  private reject(seq: number, file: string, report: unknown, status: number | null, answer: unknown): void {
    const rejectedAt = formatRfc3339Micros(this.config.time.wallMicros());
    files.writeAtomic(path.join(this.rejectedDir, fileName(seq)), JSON.stringify({ report, status, answer, rejectedAt }, null, 2));
    files.removeDurably(file);
    this.count -= 1;
  }
}

function parseJson(body: Buffer | null): unknown {
  if (body === null) return null;
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    return null;
  }
}

export type { ConfigInput };
