/**
 * LicenseManager.startHeartbeats() against the real `ledger` binary named by
 * LEDGER_BIN (api/tests/client_cases.rs runs this file): a floating
 * deployment that keeps sending heartbeats keeps its place past its first
 * lease; once stopped, its place frees when its last lease runs out, with no
 * admin. The heartbeat interval is the server's shortest (60 s), so this
 * waits about a minute of real time for the second heartbeat; the server's
 * clock is the manual test clock.
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { LicenseManager, ManualTime } from "../src/index";
import { LedgerServer, OPERATOR } from "./server";

const binary = process.env.LEDGER_BIN;
const underCi = ["", "0", "false"].indexOf(process.env.CI ?? "") === -1;
const SECOND_HEARTBEAT_WITHIN_MS = 120_000;

/** The floating deployments the key's listing shows, as "deployment until". */
async function places(s: LedgerServer, org: string): Promise<string[]> {
  const head = (await s.expect("GET", "/api/v1/log/head", OPERATOR, undefined, 200)).sequence;
  const listed = await s.expect("GET", `/api/v1/organizations/${org}/licenses?minSequence=${head}`, OPERATOR, undefined, 200);
  return (listed[0].floatingDeployments as { deploymentId: string; leaseEndsAt: string }[]).map((p) => `${p.deploymentId} ${p.leaseEndsAt}`);
}

async function waitForLeaseEnd(s: LedgerServer, org: string, until: string, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const now = await places(s, org);
    if (now.includes(`pod-a ${until}`)) return;
    if (Date.now() >= deadline) assert.fail(`no lease of pod-a until ${until}: ${JSON.stringify(now)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function other(s: LedgerServer, key: string): Promise<string> {
  const body = { licenseKey: key, clientInfo: { deployment_id: "pod-b" }, floating: true };
  return (await s.expect("POST", "/api/v1/license/validate", null, body, 200)).code;
}

async function clock(s: LedgerServer, now: string): Promise<void> {
  await s.expect("POST", "/api/v1/test-clock", OPERATOR, { now }, 200);
}

const skip = binary === undefined && !underCi ? "LEDGER_BIN is not set (run through `cargo test -p ledger-api --test client_cases`)" : false;

test("startHeartbeats keeps the place, and a stopped deployment's place frees after its lease", { skip, timeout: 300_000 }, async () => {
  assert.ok(binary, "under CI this must run: LEDGER_BIN is not set");
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "ts-heartbeats-"));
  const s = new LedgerServer(binary, path.join(scratch, "data"), "whsec_heartbeats");
  let stop: (() => void) | undefined;
  try {
    await s.start();
    const org = (await s.expect("POST", "/api/v1/organizations", OPERATOR, { name: "Acme" }, 201)).id as string;
    const body = { organizationId: org, tier: "starter", startDate: "2026-01-01", maxDeployments: 1 };
    const key = (await s.expect("POST", "/api/v1/subscriptions", OPERATOR, body, 201)).licenseKey as string;
    const floating = { floatingDeployments: 1, heartbeatIntervalSeconds: 60, leaseSeconds: 120 };
    await s.expect("POST", `/api/v1/subscriptions/${org}/floating-deployments`, OPERATOR, floating, 200);
    await clock(s, "2026-01-05T10:00:00Z");
    const leaseKey = (await s.expect("GET", "/api/v1/keys", null, undefined, 200)).leases.current as string;
    const client = new LicenseManager({ baseUrl: s.base, licenseKey: key, stateDir: path.join(scratch, "state"), leasePublicKeys: [leaseKey],
      deploymentId: "pod-a", allowPlainHttp: true, floating: true, requestTimeoutMs: 5000, time: new ManualTime(new Date("2026-01-05T10:00:00Z")) });

    stop = client.startHeartbeats();
    await waitForLeaseEnd(s, org, "2026-01-05T10:02:00Z", 10_000);
    assert.equal(client.heartbeatIntervalMs(), 60_000, "named in the signed lease");
    assert.equal(await other(s, key), "TOO_MANY_DEPLOYMENTS");

    // Past half of the lease: the next heartbeat renews it.
    await clock(s, "2026-01-05T10:01:01Z");
    await waitForLeaseEnd(s, org, "2026-01-05T10:03:01Z", SECOND_HEARTBEAT_WITHIN_MS);
    await clock(s, "2026-01-05T10:02:30Z");
    assert.equal(await other(s, key), "TOO_MANY_DEPLOYMENTS", "held past the first lease's end");

    // Stopped: the place frees when the last lease ends.
    stop();
    stop = undefined;
    await clock(s, "2026-01-05T10:03:00Z");
    assert.equal(await other(s, key), "TOO_MANY_DEPLOYMENTS", "a second before its lease ends");
    await clock(s, "2026-01-05T10:03:01Z");
    assert.equal(await other(s, key), "VALID", "no admin released it");
  } finally {
    stop?.();
    await s.stop();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
});
