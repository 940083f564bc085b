/**
 * The shared cases (clients/cases.json), run by the TypeScript client
 * against the real `ledger` binary named by LEDGER_BIN (the Rust test
 * api/tests/client_cases.rs sets it and runs this file with Node's own test
 * runner). Without LEDGER_BIN the cases skip with a notice; under CI they fail.
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { CLOCK_FILE, DEPLOYMENT_KEY_FILE, LEASE_FILE, LicenseManager, ManualTime, UsageReporter, parsePublicKey, verifyNextKey, type Status } from "../src/index";
import { CLOCK_START, LedgerServer, OPERATOR, customer, type Customer } from "./server";

const CASES = path.resolve(__dirname, "../../../cases.json");
const CLIENT_CLOCK = "2026-03-10T12:00:00Z";
const POLL_MS = 10_000;
const HOUR_MS = 3600_000;

interface Step { do: string; [field: string]: any }
interface Case { name: string; status: "passing" | "pending"; why?: string; steps?: Step[] }
const file = JSON.parse(fs.readFileSync(CASES, "utf8")) as { stripeWebhookSecret: string; cases: Case[] };
const binary = process.env.LEDGER_BIN;
const underCi = ["", "0", "false"].indexOf(process.env.CI ?? "") === -1;

/** One case's world: the server, the customer and the deployment. */
class World {
  readonly time = new ManualTime(new Date(CLIENT_CLOCK));
  stateDir: string;
  client!: LicenseManager;
  reporter!: UsageReporter;
  leaseKey = "";
  c!: Customer;
  floating = false;
  nextLeaseKey: string | null = null;

  constructor(readonly server: LedgerServer, readonly scratch: string) {
    this.stateDir = path.join(scratch, "state");
  }

  open(): void {
    const config = { baseUrl: this.server.base, licenseKey: this.c.key, stateDir: this.stateDir, leasePublicKeys: [this.leaseKey, ...(this.nextLeaseKey === null ? [] : [this.nextLeaseKey])],
      allowPlainHttp: true, time: this.time, requestTimeoutMs: 5000, floating: this.floating };
    this.client = new LicenseManager(config);
    this.reporter = new UsageReporter(config);
  }
}

function matches(status: Status, expect: Record<string, unknown>): boolean {
  return Object.entries(expect).every(([field, value]) => (status as Record<string, unknown>)[field] === value);
}

async function validate(w: World, step: Step): Promise<void> {
  const deadline = Date.now() + (step.poll ? POLL_MS : 0);
  for (;;) {
    const status = step.do === "status" ? w.client.status() : await w.client.validate();
    if (matches(status, step.expect)) return;
    if (Date.now() >= deadline) assert.fail(`${step.do}: expected ${JSON.stringify(step.expect)}, got ${JSON.stringify(status)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function licenseId(w: World): Promise<string> {
  const head = (await w.server.expect("GET", "/api/v1/log/head", OPERATOR, undefined, 200)).sequence;
  const listed = await w.server.expect("GET", `/api/v1/organizations/${w.c.org}/licenses?minSequence=${head}`, OPERATOR, undefined, 200);
  return listed[0].id;
}

function tamperLease(w: World): void {
  const file = path.join(w.stateDir, LEASE_FILE);
  const lease = JSON.parse(fs.readFileSync(file, "utf8"));
  const bytes = Buffer.from(lease.payload, "base64url");
  const at = bytes.length >> 1;
  bytes[at] = bytes[at]! ^ 1;
  fs.writeFileSync(file, JSON.stringify({ ...lease, payload: bytes.toString("base64url") }));
}

async function foreignLease(w: World): Promise<void> {
  const other = await customer(w.server, "Other");
  const dir = path.join(w.scratch, "other");
  const client = new LicenseManager({ baseUrl: w.server.base, licenseKey: other.key, stateDir: dir, leasePublicKeys: [w.leaseKey], allowPlainHttp: true, time: w.time });
  assert.equal((await client.validate()).state, "valid");
  fs.copyFileSync(path.join(dir, LEASE_FILE), path.join(w.stateDir, LEASE_FILE));
}

async function paymentFailed(w: World): Promise<void> {
  const event = { id: "evt_cases_failed", object: "event", type: "invoice.payment_failed", created: Math.floor(Date.now() / 1000),
    data: { object: { id: "in_cases_1", object: "invoice", metadata: { ledger_subscription_id: w.c.subscription } } } };
  await w.server.webhook(JSON.stringify(event));
}

/** Whether the key's license lists this deployment's public key as bound. */
async function bound(w: World, step: Step): Promise<void> {
  const head = (await w.server.expect("GET", "/api/v1/log/head", OPERATOR, undefined, 200)).sequence;
  const listed = await w.server.expect("GET", `/api/v1/organizations/${w.c.org}/licenses?minSequence=${head}`, OPERATOR, undefined, 200);
  const license = (listed as any[]).find((l) => Array.isArray(l.deployments) && l.deployments.length > 0);
  const keys = (license?.deploymentKeys ?? []) as { deploymentId: string; publicKey: string }[];
  const seen = keys.some((k) => k.deploymentId === "default" && k.publicKey === w.client.deploymentPublicKey());
  assert.equal(seen, step.expect, `bound: the license lists ${JSON.stringify(keys)}`);
}

/** Another machine: a new state directory with this one's lease and clock files, and a key pair of its own. */
function copyToNewMachine(w: World): void {
  const dir = path.join(w.scratch, "copy");
  fs.mkdirSync(dir, { recursive: true });
  for (const name of [LEASE_FILE, CLOCK_FILE]) fs.copyFileSync(path.join(w.stateDir, name), path.join(dir, name));
  w.stateDir = dir;
  w.open();
}

/** Posts a file of the scratch directory as the org admin (one byte of its document changed when `tamper`); checks `expect` ({status, code?, …}). */
async function upload(w: World, route: string, name: string, step: Step): Promise<any> {
  const body = JSON.parse(fs.readFileSync(path.join(w.scratch, name), "utf8"));
  if (step.tamper) {
    const altered = Buffer.from(body.payload, "base64url").toString("utf8").replace("2026-", "2027-");
    body.payload = Buffer.from(altered, "utf8").toString("base64url");
  }
  const reply = await w.server.call("POST", route, w.c.admin, body);
  const seen = { ...(typeof reply.json === "object" && reply.json !== null ? reply.json : {}), status: reply.status };
  for (const [field, value] of Object.entries(step.expect)) assert.equal(seen[field], value, `${field}: ${JSON.stringify(seen)}`);
  return seen;
}

/** The air-gapped steps (issue 18 item 1): files in the scratch directory. */
async function airgap(w: World, step: Step): Promise<void> {
  const file = (name: string): string => path.join(w.scratch, name);
  switch (step.do) {
    case "offline_request":
      return w.client.writeActivationRequest(file("request.json"));
    case "offline_activate": {
      const seen = await upload(w, "/api/v1/licenses/offline-activations", "request.json", step);
      if (seen.status === 200) {
        const { status: _, ...license } = seen;
        fs.writeFileSync(file("license.json"), JSON.stringify(license));
      }
      return;
    }
    case "load_license_file": {
      let loaded = true;
      try {
        w.client.loadLicenseFile(file("license.json"));
      } catch {
        loaded = false;
      }
      return assert.equal(loaded, step.expect.loaded, "load_license_file");
    }
    case "export_usage":
      return w.client.exportUsage((step.days as any[]).map((d) => ({ reportingPeriod: d.day, metrics: d.metrics })), file("usage.json"));
    case "import_usage":
      await upload(w, "/api/v1/usage/imports", "usage.json", step);
      return;
    default: {
      const head = (await w.server.expect("GET", "/api/v1/log/head", OPERATOR, undefined, 200)).sequence;
      const usage = await w.server.expect("GET", `/api/v1/organizations/${w.c.org}/usage?period=${step.day.slice(0, 7)}&minSequence=${head}`, OPERATOR, undefined, 200);
      const found = (usage.days as any[]).find((d) => d.day === step.day);
      return assert.equal(found?.metrics.activeUsers ?? null, step.expect, `${step.day}: ${JSON.stringify(usage)}`);
    }
  }
}

async function run(w: World, step: Step): Promise<void> {
  const s = w.server;
  switch (step.do) {
    case "validate":
    case "status":
      return validate(w, step);
    case "feature":
      return assert.equal(w.client.checkFeatureAccess(step.feature), step.allowed, `feature ${step.feature}`);
    case "limit": {
      const metric = ({ add_user: "maxUsers", upload_data: "maxDataVolumeGB", api_call: "maxApiCalls" } as const)[step.action as "add_user"];
      return assert.equal(w.client.checkUsageLimit(metric, step.value), step.allowed, `${step.action} at ${step.value}`);
    }
    case "advance_hours":
      return w.time.advance(step.hours * HOUR_MS);
    case "wall_minutes":
      return w.time.setWall(new Date(w.time.wallMicros() / 1000 + step.minutes * 60_000));
    case "restart_client":
      return w.open();
    case "server_stop":
      return s.stop();
    case "server_start":
      await s.start();
      return w.open();
    case "keys":
      for (const job of step.run as string[]) await s.cli(["keys", job]);
      return;
    case "server_clock":
      await s.expect("POST", "/api/v1/test-clock", OPERATOR, { now: step.to }, 200);
      return;
    case "tamper_lease":
      return tamperLease(w);
    case "bound":
      return bound(w, step);
    case "copy_to_new_machine":
      return copyToNewMachine(w);
    case "new_deployment_key":
      fs.rmSync(path.join(w.stateDir, DEPLOYMENT_KEY_FILE));
      return w.open();
    case "reset_key":
      await s.expect("POST", `/api/v1/licenses/${await licenseId(w)}/deployments/default/reset-key`, w.c.admin, {}, 200);
      return;
    case "foreign_lease":
      return foreignLease(w);
    case "revoke":
      await s.expect("POST", `/api/v1/licenses/${await licenseId(w)}/revoke`, OPERATOR, { reason: "contract ended" }, 200);
      return;
    case "upgrade":
      await s.expect("POST", `/api/v1/subscriptions/${w.c.org}/upgrade`, w.c.admin, { targetTier: step.targetTier, effectiveDate: step.effectiveDate }, 200);
      return;
    case "payment_failed":
      return paymentFailed(w);
    case "enqueue":
      w.reporter.enqueue({ reportingPeriod: step.day, metrics: step.metrics });
      return;
    case "flush": {
      const outcome = await w.reporter.flush();
      const seen = { sent: outcome.sent, rejected: outcome.rejected, remaining: outcome.remaining, stopped: outcome.stopped !== null };
      for (const [field, value] of Object.entries(step.expect)) assert.equal(seen[field as keyof typeof seen], value, `flush ${field}: ${JSON.stringify(outcome)}`);
      return;
    }
    case "allow_floating":
      await s.expect("POST", `/api/v1/subscriptions/${w.c.org}/floating-deployments`, OPERATOR, { floatingDeployments: step.deployments }, 200);
      w.floating = true;
      return w.open();
    case "heartbeat_interval": {
      const ms = w.client.heartbeatIntervalMs();
      return assert.equal(ms === null ? null : ms / 1000, step.seconds, "heartbeat interval");
    }
    case "pin_next_lease_key": {
      const leases = (await s.expect("GET", "/api/v1/keys", null, undefined, 200)).leases;
      assert.equal(typeof leases.next, "string", `no next lease key announced: ${JSON.stringify(leases)}`);
      const signed = verifyNextKey(parsePublicKey(leases.current), parsePublicKey(leases.next), Buffer.from(leases.nextSignature ?? "", "base64"));
      assert.ok(signed, "the next lease key is signed by the current one");
      w.nextLeaseKey = leases.next;
      return w.open();
    }
    case "other_deployment": {
      const body = { licenseKey: w.c.key, clientInfo: { deployment_id: step.deployment }, floating: step.floating };
      const answer = await s.expect("POST", "/api/v1/license/validate", null, body, 200);
      for (const [field, value] of Object.entries(step.expect)) assert.equal(answer[field], value, `${field}: ${JSON.stringify(answer)}`);
      return;
    }
    case "offline_request":
    case "offline_activate":
    case "load_license_file":
    case "export_usage":
    case "import_usage":
    case "usage_day":
      return airgap(w, step);
    default:
      assert.fail(`unknown step ${step.do}`);
  }
}

for (const c of file.cases) {
  if (c.status === "pending") {
    test(c.name, { todo: c.why ?? "pending" }, () => {});
    continue;
  }
  const skip = binary === undefined && !underCi ? "LEDGER_BIN is not set (run through `cargo test -p api --test client_cases`)" : false;
  test(c.name, { skip }, async () => {
    assert.ok(binary, "under CI the shared cases must run: LEDGER_BIN is not set");
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), `ts-case-${c.name}-`));
    const server = new LedgerServer(binary, path.join(scratch, "data"), file.stripeWebhookSecret);
    try {
      await server.start();
      const w = new World(server, scratch);
      w.c = await customer(server, "Acme");
      w.leaseKey = (await server.expect("GET", "/api/v1/keys", null, undefined, 200)).leases.current;
      w.open();
      for (const [i, step] of (c.steps ?? []).entries()) {
        try {
          await run(w, step);
        } catch (e) {
          throw new Error(`step ${i + 1} (${JSON.stringify(step)}): ${(e as Error).message}\n--- server output (last lines):\n${server.output.slice(-30).join("\n")}`);
        }
      }
    } finally {
      await server.stop();
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  });
}

void CLOCK_START;
