/** Unit tests of the TypeScript client that need no server. */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { generateKeyPairSync, sign, verify } from "node:crypto";
import { inspect } from "node:util";

import { blake3, checkReport, keyBinding, LEASE_FILE, LicenseManager, ManualTime, makeConfig, parsePublicKey, UsageReporter, verifyLease, verifyNextKey } from "../src/index";
import { decide } from "../src/enforce";
import { CHALLENGE_CHARS, DEPLOYMENT_KEY_FILE, loadOrCreate, PROOF_DOMAIN, signProof } from "../src/identity";
import { LEASE_DOMAIN, NEXT_KEY_DOMAIN, REFUSAL_DOMAIN, rawPublicKey, type LeaseBody } from "../src/lease";
import { judge, type HeldLease } from "../src/offline";
import { formatRfc3339Micros, parseRfc3339Micros } from "../src/time";

const DAY_US = 24 * 3600 * 1_000_000;
const MINUTE_US = 60 * 1_000_000;

test("BLAKE3 matches the published vectors", () => {
  assert.equal(blake3(Buffer.alloc(0)).toString("hex"), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
  assert.equal(blake3(Buffer.from("abc")).toString("hex"), "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
  const input = Buffer.alloc(1024, 0).map((_, i) => i % 251);
  assert.equal(blake3(input).toString("hex"), "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7");
  assert.throws(() => blake3(Buffer.alloc(1025)), RangeError);
});

test("RFC 3339 times keep their microseconds", () => {
  assert.equal(parseRfc3339Micros("1969-12-31T23:59:59.999995Z"), -5);
  assert.equal(parseRfc3339Micros("1970-01-01T01:00:00+01:00"), 0);
  assert.equal(parseRfc3339Micros("2026-01-01"), null);
  assert.equal(parseRfc3339Micros(formatRfc3339Micros(1_767_225_600_123_456)), 1_767_225_600_123_456);
});

function body(overrides: Partial<LeaseBody> = {}): LeaseBody {
  return {
    version: 1, licenseId: "l", organizationId: "o", keyBinding: keyBinding("LK1-key"), deploymentId: "default", nonce: "n",
    clientTime: "1970-01-11T00:00:00Z", issuedAt: "1972-09-27T00:00:00Z", leaseExpiresAt: "1972-10-04T00:00:00Z", code: "VALID",
    tier: "starter", limits: { maxUsers: 5, maxDataVolumeGB: 1000, maxApiCalls: 10000, modelSize: "small" }, features: ["basic_analytics"],
    ...overrides,
  };
}

function signed(b: LeaseBody, key = generateKeyPairSync("ed25519")) {
  const bytes = Buffer.from(JSON.stringify(b));
  const signature = sign(null, Buffer.concat([LEASE_DOMAIN, bytes]), key.privateKey);
  return { lease: { payload: bytes.toString("base64url"), signature: signature.toString("base64url") }, key };
}

test("a lease verifies only unchanged, with its key, for its license key", () => {
  const { lease, key } = signed(body());
  assert.deepEqual(verifyLease(lease, key.publicKey, "LK1-key"), body());
  assert.throws(() => verifyLease(lease, key.publicKey, "LK1-other"), { rejection: "other_key" });
  assert.throws(() => verifyLease(lease, generateKeyPairSync("ed25519").publicKey, "LK1-key"), { rejection: "bad_signature" });
  const bytes = Buffer.from(lease.payload, "base64url");
  bytes[10] = bytes[10]! ^ 1;
  assert.throws(() => verifyLease({ ...lease, payload: bytes.toString("base64url") }, key.publicKey, "LK1-key"), { rejection: "bad_signature" });
  assert.throws(() => verifyLease({ payload: "%%", signature: "" }, key.publicKey, "LK1-key"), { rejection: "malformed" });
});

test("a next key is announced only by the current key", () => {
  const current = generateKeyPairSync("ed25519");
  const next = generateKeyPairSync("ed25519").publicKey;
  const message = Buffer.concat([NEXT_KEY_DOMAIN, rawPublicKey(current.publicKey), rawPublicKey(next)]);
  const signature = sign(null, message, current.privateKey);
  assert.ok(verifyNextKey(current.publicKey, next, signature));
  assert.ok(!verifyNextKey(next, current.publicKey, signature));
  assert.equal(parsePublicKey(rawPublicKey(next).toString("base64")).equals(next), true);
});

function held(): HeldLease {
  // Issued at server time 1000 days, asked at client wall time 10 days: only differences count.
  return { body: body(), clientTimeUs: 10 * DAY_US, issuedAtUs: 1000 * DAY_US, expiresAtUs: 1007 * DAY_US, anchorServerUs: 1000 * DAY_US, anchorAtUs: 0 };
}

test("offline: valid within the grace by either clock, expired after, tampering when the wall goes back", () => {
  const marks = () => ({ wallHighWaterUs: 10 * DAY_US, serverTimeHighWaterUs: 1000 * DAY_US });
  assert.equal(judge(held(), marks(), 16 * DAY_US, 0, 5 * MINUTE_US), "valid");
  assert.equal(judge(held(), marks(), 17 * DAY_US, 0, 5 * MINUTE_US), "expired");
  assert.equal(judge(held(), marks(), 10 * DAY_US, 7 * DAY_US, 5 * MINUTE_US), "expired", "the monotonic clock counts though the wall stood still");
  const m = marks();
  assert.equal(judge(held(), m, 12 * DAY_US, 0, 5 * MINUTE_US), "valid");
  assert.equal(judge(held(), m, 12 * DAY_US - 5 * MINUTE_US - 1, 0, 5 * MINUTE_US), "clock_tampered");
  assert.equal(judge(held(), m, 12 * DAY_US - 5 * MINUTE_US, 0, 5 * MINUTE_US), "valid");
  assert.equal(judge(held(), marks(), 10 * DAY_US - 6 * MINUTE_US, 0, 5 * MINUTE_US), "clock_tampered");
});

test("each enforcement check allows below the limit only; -1 is unlimited, other negatives deny", () => {
  const b = body();
  assert.equal(decide(b, { kind: "add_user", activeUsers: 4 }).allowed, true);
  assert.deepEqual(decide(b, { kind: "add_user", activeUsers: 5 }), { allowed: false, denial: { reason: "limit_reached", limit: 5 } });
  assert.equal(decide(b, { kind: "upload_data", dataVolumeGB: 999.99 }).allowed, true);
  assert.equal(decide(b, { kind: "upload_data", dataVolumeGB: Number.NaN }).allowed, false);
  assert.equal(decide(b, { kind: "api_call", callsThisMonth: 10000 }).allowed, false);
  assert.equal(decide(b, { kind: "access_feature", feature: "white_labeling" }).allowed, false);
  const unlimited = body({ limits: { maxUsers: -1, maxDataVolumeGB: -2, maxApiCalls: -1, modelSize: "large" } });
  assert.equal(decide(unlimited, { kind: "add_user", activeUsers: 1e12 }).allowed, true);
  assert.equal(decide(unlimited, { kind: "upload_data", dataVolumeGB: 0 }).allowed, false);
});

test("reports the server would refuse are refused locally", () => {
  const metrics = { activeUsers: 3, dataVolumeGB: 12.34, apiCallsCount: 10, trainingHours: 1.5 };
  checkReport({ reportingPeriod: "2026-01-01", metrics });
  for (const bad of [{ dataVolumeGB: 0.001 }, { dataVolumeGB: -1 }, { activeUsers: 1.5 }, { apiCallsCount: 1e12 + 1 }, { trainingHours: Number.NaN }]) {
    assert.throws(() => checkReport({ reportingPeriod: "2026-01-01", metrics: { ...metrics, ...bad } }), { kind: "invalid_report" }, JSON.stringify(bad));
  }
  assert.throws(() => checkReport({ reportingPeriod: "2026-02-30", metrics }), { kind: "invalid_report" });
});

test("misconfigurations are refused at start", () => {
  const key = rawPublicKey(generateKeyPairSync("ed25519").publicKey).toString("base64");
  const ok = { baseUrl: "http://ledger.local", licenseKey: "LK1-x", stateDir: "/tmp/unused", leasePublicKeys: [key], allowPlainHttp: true };
  makeConfig(ok);
  const config = makeConfig(ok);
  for (const shown of [inspect(config), JSON.stringify(config), inspect(new UsageReporter({ ...ok, stateDir: fs.mkdtempSync(path.join(os.tmpdir(), "ts-cfg-")) }))]) {
    assert.ok(!shown.includes("LK1-x"), shown);
  }
  for (const bad of [{ allowPlainHttp: false }, { baseUrl: "ledger.local" }, { deploymentId: "plant 7" }, { leasePublicKeys: [] },
    { leasePublicKeys: ["AAAA"] }, { offlineGraceMs: 8 * 24 * 3600 * 1000 }, { licenseKey: "x".repeat(513) }]) {
    assert.throws(() => makeConfig({ ...ok, ...bad }), { kind: "config" }, JSON.stringify(bad));
  }
});

test("the queue is bounded, durable across a restart, and stops at an unreachable server", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ts-queue-"));
  const key = rawPublicKey(generateKeyPairSync("ed25519").publicKey).toString("base64");
  const config = { baseUrl: "http://127.0.0.1:9", licenseKey: "LK1-x", stateDir: dir, leasePublicKeys: [key], allowPlainHttp: true, usageQueueMax: 2 };
  const report = { reportingPeriod: "2026-01-01", metrics: { activeUsers: 1, dataVolumeGB: 1, apiCallsCount: 1, trainingHours: 0 } };
  const reporter = new UsageReporter(config);
  reporter.enqueue(report);
  reporter.enqueue(report);
  assert.throws(() => reporter.enqueue(report), { kind: "queue_full" });
  const reopened = new UsageReporter(config);
  assert.equal(reopened.pending(), 2);
  const outcome = await reopened.flush();
  assert.equal(outcome.sent, 0);
  assert.equal(outcome.remaining, 2);
  assert.match(outcome.stopped ?? "", /could not be reached/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("a stored lease that does not verify is no lease; without a server the verdict is offline", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ts-lease-"));
  const pair = generateKeyPairSync("ed25519");
  const now = Date.parse("2026-03-01T00:00:00Z");
  const deploymentKey = loadOrCreate(dir).publicKey;
  const b = body({ clientTime: new Date(now).toISOString(), issuedAt: "2026-01-01T00:00:00Z", leaseExpiresAt: "2026-01-08T00:00:00Z", deploymentKey });
  fs.writeFileSync(path.join(dir, LEASE_FILE), JSON.stringify(signed(b, pair).lease));
  const time = new ManualTime(new Date(now + 3600_000));
  const config = { baseUrl: "http://127.0.0.1:9", licenseKey: "LK1-key", stateDir: dir, leasePublicKeys: [rawPublicKey(pair.publicKey).toString("base64")], allowPlainHttp: true, time };
  const manager = new LicenseManager(config);
  const status = await manager.validate();
  assert.equal(status.state, "valid");
  assert.equal(status.state === "valid" && status.offline, true);
  assert.equal(manager.checkFeatureAccess("basic_analytics"), true);
  const stranger = rawPublicKey(generateKeyPairSync("ed25519").publicKey).toString("base64");
  assert.equal(new LicenseManager({ ...config, leasePublicKeys: [stranger] }).status().state, "no_lease");
  assert.equal(new LicenseManager({ ...config, licenseKey: "LK1-other" }).status().state, "no_lease");
  assert.equal(new LicenseManager({ ...config, deploymentId: "plant-7" }).status().state, "no_lease");
  // The same lease on another machine (its own key pair) is no lease there.
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), "ts-copy-"));
  fs.copyFileSync(path.join(dir, LEASE_FILE), path.join(copy, LEASE_FILE));
  assert.equal(new LicenseManager({ ...config, stateDir: copy }).status().state, "no_lease");
  assert.equal(fs.statSync(path.join(copy, DEPLOYMENT_KEY_FILE)).mode & 0o777, 0o600);
  assert.notEqual(loadOrCreate(copy).publicKey, deploymentKey);
  assert.equal(new LicenseManager(config).status().state, "valid", "the key file is read back, not made again");
  fs.rmSync(copy, { recursive: true, force: true });
  fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * What the real server never sends, from a stand-in: a replayed lease (another
 * request's nonce), an unsigned "revoked", a refusal for another request.
 */
test("a replayed lease is rejected and an unsigned or replayed refusal is no answer", async () => {
  const http = await import("node:http");
  const pair = generateKeyPairSync("ed25519");
  const wall = Date.parse("2026-03-01T00:00:00Z");
  let answer: (request: { nonce: string; clientTime: string; deploymentKey: string }) => unknown = () => ({});
  const server = http.createServer((req, res) => {
    let text = "";
    req.on("data", (chunk) => (text += chunk));
    req.on("end", () => {
      res.setHeader("content-type", "application/json");
      if (req.url === "/api/v1/license/challenge") return void res.end(JSON.stringify({ challenge: "c".repeat(CHALLENGE_CHARS) }));
      res.end(JSON.stringify(answer(JSON.parse(text))));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ts-standin-"));
  const config = { baseUrl: `http://127.0.0.1:${port}`, licenseKey: "LK1-key", stateDir: dir, time: new ManualTime(new Date(wall)),
    leasePublicKeys: [rawPublicKey(pair.publicKey).toString("base64")], allowPlainHttp: true };
  const manager = new LicenseManager(config);
  const lease = (nonce: string, clientTime: string, deploymentKey?: string) =>
    signed(body({ nonce, clientTime, issuedAt: "2026-01-01T00:00:00Z", leaseExpiresAt: "2026-01-08T00:00:00Z", deploymentKey }), pair).lease;
  const refusal = (nonce: string) => {
    const bytes = Buffer.from(JSON.stringify({ version: 1, keyBinding: keyBinding("LK1-key"), deploymentId: "default", nonce, code: "REVOKED", issuedAt: "2026-01-01T00:00:00Z" }));
    return { payload: bytes.toString("base64url"), signature: sign(null, Buffer.concat([REFUSAL_DOMAIN, bytes]), pair.privateKey).toString("base64url") };
  };
  try {
    answer = (r) => ({ isValid: true, code: "VALID", lease: lease(r.nonce, r.clientTime, r.deploymentKey) });
    assert.equal((await manager.validate()).state, "valid");
    answer = (r) => ({ isValid: true, code: "VALID", lease: lease(r.nonce, r.clientTime) });
    await assert.rejects(manager.validate(), { kind: "lease_rejected", detail: { rejection: "other_deployment_key" } });
    answer = (r) => ({ isValid: true, code: "VALID", lease: lease("an-old-nonce", r.clientTime, r.deploymentKey) });
    await assert.rejects(manager.validate(), { kind: "lease_rejected", detail: { rejection: "stale_nonce" } });
    answer = (r) => ({ isValid: true, code: "VALID", lease: lease(r.nonce, "2020-01-01T00:00:00Z", r.deploymentKey) });
    await assert.rejects(manager.validate(), { kind: "lease_rejected", detail: { rejection: "client_time_mismatch" } });
    answer = () => ({ isValid: false, code: "REVOKED" });
    const unsigned = await manager.validate();
    assert.equal(unsigned.state === "valid" && unsigned.offline, true, JSON.stringify(unsigned));
    answer = () => ({ isValid: false, code: "REVOKED", refusal: refusal("an-old-nonce") });
    assert.equal((await manager.validate()).state, "valid");
    assert.ok(fs.existsSync(path.join(dir, LEASE_FILE)), "the lease is kept");
    answer = (r) => ({ isValid: false, code: "REVOKED", refusal: refusal(r.nonce) });
    assert.deepEqual(await manager.validate(), { state: "invalid", code: "REVOKED" });
    assert.ok(!fs.existsSync(path.join(dir, LEASE_FILE)), "a signed refusal drops the lease");
    assert.equal(manager.checkFeatureAccess("basic_analytics"), false);
  } finally {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the next lease key is learned only when the pinned key that verified the lease signed it", async () => {
  const http = await import("node:http");
  const current = generateKeyPairSync("ed25519");
  const next = generateKeyPairSync("ed25519");
  const stranger = generateKeyPairSync("ed25519");
  const b64 = (k: typeof current) => rawPublicKey(k.publicKey).toString("base64");
  let signer = current;
  let announcer = current;
  const server = http.createServer((req, res) => {
    let text = "";
    req.on("data", (chunk) => (text += chunk));
    req.on("end", () => {
      res.setHeader("content-type", "application/json");
      if (req.url === "/api/v1/license/challenge") return void res.end(JSON.stringify({ challenge: "c".repeat(CHALLENGE_CHARS) }));
      if (req.method === "GET") {
        const message = Buffer.concat([NEXT_KEY_DOMAIN, rawPublicKey(current.publicKey), rawPublicKey(next.publicKey)]);
        const nextSignature = sign(null, message, announcer.privateKey).toString("base64");
        res.end(JSON.stringify({ leases: { current: b64(current), next: b64(next), nextSignature } }));
        return;
      }
      const r = JSON.parse(text);
      const b = body({ nonce: r.nonce, clientTime: r.clientTime, issuedAt: "2026-01-01T00:00:00Z", leaseExpiresAt: "2026-01-08T00:00:00Z", deploymentKey: r.deploymentKey });
      res.end(JSON.stringify({ isValid: true, code: "VALID", lease: signed(b, signer).lease }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const dirs: string[] = [];
  const manager = (learnLeaseKeys: boolean) => {
    dirs.push(fs.mkdtempSync(path.join(os.tmpdir(), "ts-learn-")));
    return new LicenseManager({ baseUrl: `http://127.0.0.1:${port}`, licenseKey: "LK1-key", stateDir: dirs.at(-1)!, learnLeaseKeys,
      leasePublicKeys: [b64(current)], allowPlainHttp: true, time: new ManualTime(new Date("2026-03-01T00:00:00Z")) });
  };
  try {
    announcer = stranger;
    const wary = manager(true);
    const status = await wary.validate();
    assert.equal(wary.leaseKeys().length, 1, "an announcement the current key did not sign is ignored");
    assert.ok(status.state === "valid" && status.warnings.some((w) => w.includes("not signed by its current key")), JSON.stringify(status));
    announcer = current;
    const off = manager(false);
    await off.validate();
    assert.equal(off.leaseKeys().length, 1, "learning is off by default");
    const learner = manager(true);
    await learner.validate();
    assert.equal(learner.leaseKeys().length, 2);
    assert.ok(learner.leaseKeys()[1]!.equals(next.publicKey));
    signer = next; // the server rotated
    assert.equal((await learner.validate()).state, "valid");
    await assert.rejects(off.validate(), { kind: "lease_rejected", detail: { rejection: "bad_signature" } });
  } finally {
    server.close();
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the proof is the deployment key's signature over the challenge, key binding, deployment and nonce", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ts-proof-"));
  const key = loadOrCreate(dir);
  const signature = Buffer.from(signProof(key, "c", "k", "d", "n"), "base64url");
  const publicKey = parsePublicKey(Buffer.from(key.publicKey, "base64url").toString("base64"));
  assert.ok(verify(null, Buffer.concat([PROOF_DOMAIN, Buffer.from("c\0k\0d\0n")]), publicKey, signature));
  assert.ok(!verify(null, Buffer.concat([PROOF_DOMAIN, Buffer.from("c\0k\0d\0m")]), publicKey, signature));
  fs.rmSync(dir, { recursive: true, force: true });
});
