/**
 * LicenseManager: validates online, remembers the signed lease, and judges
 * it offline (offline.ts). Mirrors the Rust client (`client/src/license.rs`):
 * same files, same wire format, same rules.
 *
 * It trusts only leases signed by a pinned key, bound to its license key
 * and deployment, answering its own nonce and clientTime; and only
 * refusals signed for that very request.
 */
import * as path from "node:path";
import { randomBytes, type KeyObject } from "node:crypto";

import { makeConfig, type Config, type ConfigInput } from "./config";
import { decide, type Action, type Decision } from "./enforce";
import { ClientError, LeaseError } from "./errors";
import * as files from "./files";
import { Unreachable, request, truncated } from "./http";
import { CHALLENGE_CHARS, loadOrCreate, signProof, type DeploymentKey } from "./identity";
import { keyBinding, parsePublicKey, verifyLeaseWith, verifyNextKey, verifyRefusal, type LeaseBody, type LeaseLimits } from "./lease";
import { LEASE_KEYS_MAX } from "./config";
import { CLOCK_PERSIST_INTERVAL_US, judge, parseMarks, type ClockMarks, type HeldLease, type Judgement } from "./offline";
import { formatRfc3339Micros, parseRfc3339Micros } from "./time";
import * as airgap from "./airgap";
import type { UsageReport } from "./usage";

/** The lease exactly as the server sent it ({payload, signature}). */
export const LEASE_FILE = "lease.json";
/** The clock high-water marks. */
export const CLOCK_FILE = "clock.json";
const VALID_CODES = new Set(["VALID", "PAST_DUE", "SUPERSEDED"]);
const RETRY_AFTER_DEFAULT_S = 60;
/** A Retry-After is honoured up to an hour, so a wrong header cannot keep the client offline. */
const RETRY_AFTER_MAX_S = 3600;

export type Status =
  | {
      state: "valid";
      code: string;
      tier: string;
      limits: LeaseLimits;
      features: string[];
      /** When offline use ends (the lease's end, capped by the offline grace), server time. */
      leaseExpiresAt: Date;
      /** This verdict rests on the stored lease alone. */
      offline: boolean;
      warnings: string[];
    }
  | { state: "invalid"; code: string }
  | { state: "clock_tampered" }
  | { state: "no_lease" };

/** The four limits the seed's `checkUsageLimit(metric, value)` names. */
export type Metric = "maxUsers" | "maxDataVolumeGB" | "maxApiCalls";

type Verdict = { kind: "valid"; lease: HeldLease } | { kind: "invalid"; code: string } | { kind: "clock_tampered" } | { kind: "no_lease" };

/** How long startHeartbeats() waits when the lease names no heartbeat interval (no lease yet, or the server unreachable). */
export const HEARTBEAT_RETRY_MS = 60_000;
/** The shortest heartbeat interval honoured (the server's own lower bound), so a lease cannot make the client spin. */
const HEARTBEAT_INTERVAL_MIN_S = 60;

export class LicenseManager {
  readonly config: Config;

  /** Never shows the license key (see makeConfig). */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `LicenseManager { deploymentId: ${JSON.stringify(this.config.deploymentId)}, stateDir: ${JSON.stringify(this.config.stateDir)} }`;
  }
  private readonly leasePath: string;
  private readonly clockPath: string;
  private lease: HeldLease | null;
  private marks: ClockMarks;
  private persisted: ClockMarks;
  private persistedAtUs: number;
  private invalid: string | null = null;
  private reachedServer = false;
  private warnings: string[] = [];
  private retryNotBeforeUs: number | null = null;
  private learnedKeys: KeyObject[] = [];
  private readonly deploymentKey: DeploymentKey;

  /** Opens the state directory (creating it) and loads the stored lease; one that does not verify in any byte is no lease. */
  constructor(input: ConfigInput) {
    this.config = makeConfig(input);
    const config = this.config;
    files.createDir(config.stateDir);
    files.removeTemporaries(config.stateDir);
    this.deploymentKey = loadOrCreate(config.stateDir);
    this.leasePath = path.join(config.stateDir, LEASE_FILE);
    this.clockPath = path.join(config.stateDir, CLOCK_FILE);
    const stored = parseMarks(files.readOptional(this.clockPath));
    const marks = stored ?? { wallHighWaterUs: Number.MIN_SAFE_INTEGER, serverTimeHighWaterUs: Number.MIN_SAFE_INTEGER };
    const now = config.time.monotonicMicros();
    const leaseBody = loadLease(config, this.deploymentKey.publicKey, files.readOptional(this.leasePath));
    // An air-gapped deployment's license file, when it is newer.
    const fileBody = storedLicenseFile(config, this.deploymentKey.publicKey);
    const fromFile = fileBody !== null && (leaseBody === null || parseRfc3339Micros(fileBody.issuedAt)! > parseRfc3339Micros(leaseBody.issuedAt)!);
    const body = fromFile ? fileBody : leaseBody;
    this.lease = null;
    if (body !== null) {
      // Without a marks file the signed times are the floor.
      marks.wallHighWaterUs = Math.max(marks.wallHighWaterUs, parseRfc3339Micros(body.clientTime!)!);
      marks.serverTimeHighWaterUs = Math.max(marks.serverTimeHighWaterUs, parseRfc3339Micros(body.issuedAt)!);
      this.lease = fromFile ? heldLicenseFile(body, marks.serverTimeHighWaterUs, now) : heldLease(config, body, marks.serverTimeHighWaterUs, now);
    }
    this.marks = marks;
    this.persisted = stored ?? { ...marks };
    this.persistedAtUs = now;
  }

  /**
   * Asks the server with a fresh nonce and our wall clock; accepts its lease
   * only if it verifies with a pinned key, is bound to our license key and
   * deployment and echoes this request's nonce and clientTime; stores it
   * durably before returning. When the server cannot be reached (network,
   * 5xx, 408, 429, cut off) this is the offline judgement of the stored
   * lease (`offline: true`). Throws ClientError on a 400, an answer outside
   * the contract, or a "valid" answer whose lease cannot be trusted (the
   * stored lease is kept).
   */
  async validate(): Promise<Status> {
    const config = this.config;
    const started = config.time.monotonicMicros();
    if (this.retryNotBeforeUs !== null && started < this.retryNotBeforeUs) {
      const wait = Math.ceil((this.retryNotBeforeUs - started) / 1e6);
      return this.offline(`rate limited by the server; next attempt in ${wait} s`);
    }
    const challenge = await this.fetchChallenge(started);
    if (challenge.offline !== undefined) return this.offline(challenge.offline);
    const nonce = randomBytes(16).toString("base64url");
    const clientTimeUs = Math.floor(config.time.wallMicros() / 1000) * 1000;
    const signature = signProof(this.deploymentKey, challenge.challenge!, keyBinding(config.licenseKey), config.deploymentId, nonce);
    const lastSync = this.lease?.body.issuedAt ?? "1970-01-01T00:00:00Z";
    const payload = {
      licenseKey: config.licenseKey,
      clientInfo: { version: config.clientVersion, deployment_id: config.deploymentId, last_sync: lastSync },
      nonce,
      clientTime: formatRfc3339Micros(clientTimeUs),
      ...(config.floating ? { floating: true } : {}),
      deploymentKey: this.deploymentKey.publicKey,
      challenge: challenge.challenge,
      signature,
    };
    let answer;
    try {
      answer = await request("POST", `${config.baseUrl}/api/v1/license/validate`, payload, config.requestTimeoutMs, config.clientVersion);
    } catch (e) {
      if (e instanceof Unreachable) return this.offline(e.message);
      throw e;
    }
    if (answer.status === 429) {
      const wait = Math.min(answer.retryAfterSeconds ?? RETRY_AFTER_DEFAULT_S, RETRY_AFTER_MAX_S);
      this.retryNotBeforeUs = started + wait * 1e6;
      return this.offline(`rate limited by the server for ${wait} s`);
    }
    if (answer.status >= 500 || answer.status === 408) return this.offline(`the server answered ${answer.status}`);
    if (answer.body === null) return this.offline("the server's answer was cut off");
    if (answer.status !== 200) {
      throw new ClientError("http", `the server answered ${answer.status}: ${truncated(answer.body)}`, { status: answer.status });
    }
    const accepted = this.accept(answer.body, nonce, clientTimeUs);
    if (!("key" in accepted)) return accepted;
    if (config.learnLeaseKeys && config.leasePublicKeys.some((k) => k.equals(accepted.key))) await this.learnKeys(accepted.key);
    return this.status();
  }

  /**
   * A floating deployment's heartbeat (config `floating`): a validation,
   * answered and judged as validate(); it keeps the deployment's place and
   * extends its lease. Counted against the key's daily cap like any.
   */
  async heartbeat(): Promise<Status> {
    return this.validate();
  }

  /** How often the server asks this floating deployment to send a heartbeat (signed in its lease); null for a fixed one or without a lease. */
  heartbeatIntervalMs(): number | null {
    const seconds = this.lease?.body.heartbeatIntervalSeconds;
    return seconds === undefined ? null : Math.max(seconds, HEARTBEAT_INTERVAL_MIN_S) * 1000;
  }

  /**
   * Sends heartbeats until the returned function is called: one now, then
   * one every heartbeatIntervalMs() (every HEARTBEAT_RETRY_MS while there is
   * none). A killed process stops them, and its place frees when its lease ends.
   */
  startHeartbeats(): () => void {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const beat = async (): Promise<void> => {
      if (stopped) return;
      try {
        await this.heartbeat();
      } catch (e) {
        this.warnings.push(`a heartbeat failed: ${(e as Error).message}`);
      }
      if (!stopped) timer = setTimeout(() => void beat(), this.heartbeatIntervalMs() ?? HEARTBEAT_RETRY_MS);
    };
    void beat();
    return () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    };
  }

  /**
   * Learns the server's next lease key, but only when the key list names as
   * current the pinned key that just verified a fresh lease, and that key
   * signed the next one: a list anyone could have written is ignored.
   */
  private async learnKeys(verifiedWith: KeyObject): Promise<void> {
    const config = this.config;
    let leases: { current?: unknown; next?: unknown; nextSignature?: unknown };
    try {
      const answer = await request("GET", `${config.baseUrl}/api/v1/keys`, undefined, config.requestTimeoutMs, config.clientVersion);
      if (answer.status !== 200 || answer.body === null) throw new Error(`the server answered ${answer.status}`);
      leases = JSON.parse(answer.body.toString("utf8")).leases ?? {};
      if (typeof leases.current !== "string") throw new Error("no current lease key");
      if (!parsePublicKey(leases.current).equals(verifiedWith)) {
        this.warnings.push("the server's key list does not name the key of its lease; ignored");
        return;
      }
      if (leases.next === undefined || leases.next === null) return;
      const next = parsePublicKey(String(leases.next));
      const signature = Buffer.from(typeof leases.nextSignature === "string" ? leases.nextSignature : "", "base64");
      if (!verifyNextKey(verifiedWith, next, signature)) {
        this.warnings.push("the server's next lease key is not signed by its current key; ignored");
        return;
      }
      const known = this.leaseKeys().some((k) => k.equals(next));
      if (!known && this.leaseKeys().length < LEASE_KEYS_MAX) this.learnedKeys.push(next);
    } catch (e) {
      this.warnings.push(`the server's lease keys could not be read: ${(e as Error).message}`);
    }
  }

  /** Reads a 200 answer: a lease to store, or a signed refusal to act on. */
  private accept(bytes: Buffer, nonce: string, clientTimeUs: number): Status | { key: KeyObject } {
    let answer: { isValid?: unknown; code?: unknown; warnings?: unknown; lease?: unknown; refusal?: unknown };
    try {
      answer = JSON.parse(bytes.toString("utf8"));
    } catch (e) {
      throw new ClientError("protocol", `the server's answer could not be read: ${(e as Error).message}`);
    }
    if (typeof answer !== "object" || answer === null || typeof answer.isValid !== "boolean" || typeof answer.code !== "string") {
      throw new ClientError("protocol", "the server's answer is not a validation answer");
    }
    if (!answer.isValid) {
      // Only a refusal the server signed for this very request switches
      // the deployment off; anything else is treated as no answer.
      const refused = this.trustedRefusal(answer.refusal, nonce);
      if ("ignored" in refused) return this.offline(`a refusal (${answer.code}) was ignored: ${refused.ignored}`);
      return this.dropLease(refused.code);
    }
    if (answer.lease === undefined || answer.lease === null) throw rejected("missing");
    let body: LeaseBody;
    let key: KeyObject;
    try {
      [body, key] = verifyLeaseWith(this.leaseKeys(), answer.lease, this.config.licenseKey);
      checkBody(body, this.config, this.deploymentKey.publicKey, nonce, clientTimeUs);
    } catch (e) {
      if (e instanceof LeaseError) throw rejected(e.rejection);
      throw e;
    }
    const warnings = Array.isArray(answer.warnings) ? answer.warnings.filter((w) => typeof w === "string").slice(0, 16) : [];
    this.store(answer.lease, body, warnings);
    return { key };
  }

  /**
   * A fresh challenge for the deployment key to sign, or why the server
   * could not be reached (judged offline, like a validation without answer).
   */
  private async fetchChallenge(started: number): Promise<{ challenge?: string; offline?: string }> {
    const config = this.config;
    let answer;
    try {
      answer = await request("POST", `${config.baseUrl}/api/v1/license/challenge`, {}, config.requestTimeoutMs, config.clientVersion);
    } catch (e) {
      if (e instanceof Unreachable) return { offline: e.message };
      throw e;
    }
    if (answer.status === 429) {
      const wait = Math.min(answer.retryAfterSeconds ?? RETRY_AFTER_DEFAULT_S, RETRY_AFTER_MAX_S);
      this.retryNotBeforeUs = started + wait * 1e6;
      return { offline: `rate limited by the server for ${wait} s` };
    }
    if (answer.status >= 500 || answer.status === 408) return { offline: `the server answered ${answer.status}` };
    if (answer.body === null) return { offline: "the server's answer was cut off" };
    if (answer.status !== 200) {
      throw new ClientError("http", `the server answered ${answer.status}: ${truncated(answer.body)}`, { status: answer.status });
    }
    let challenge: unknown;
    try {
      challenge = JSON.parse(answer.body.toString("utf8")).challenge;
    } catch (e) {
      throw new ClientError("protocol", `the server's answer could not be read: ${(e as Error).message}`);
    }
    if (typeof challenge !== "string" || challenge.length !== CHALLENGE_CHARS) {
      throw new ClientError("protocol", "the challenge is not one the server mints");
    }
    return { challenge };
  }

  /** The deployment's public key (base64url), as the server binds it. */
  deploymentPublicKey(): string {
    return this.deploymentKey.publicKey;
  }

  /**
   * Air-gapped activation, step 1: writes a new activation request to
   * `out` for an admin to upload, and keeps it in the state directory until
   * its license file is loaded. No network.
   */
  writeActivationRequest(out: string): void {
    const clientTimeUs = Math.floor(this.config.time.wallMicros() / 1000) * 1000;
    const file = airgap.activationRequest(this.config, this.deploymentKey, formatRfc3339Micros(clientTimeUs));
    files.writeAtomic(path.join(this.config.stateDir, airgap.PENDING_REQUEST_FILE), airgap.fileText(file));
    files.writeAtomic(out, airgap.fileText(file));
  }

  /**
   * Air-gapped activation, step 2: loads the license file the server
   * answered the pending request with. It must verify with a pinned lease
   * key and be bound to this license key, deployment, key pair and the
   * request's nonce and clock; it is then stored and judged offline until
   * its own end (at most 90 days), a clock set back detected as for a
   * lease. Throws ClientError ("lease_rejected") otherwise. No network.
   */
  loadLicenseFile(file: string): Status {
    const config = this.config;
    const bytes = files.readOptional(file);
    const pending = files.readOptional(path.join(config.stateDir, airgap.PENDING_REQUEST_FILE));
    if (bytes === null || pending === null) throw rejected("missing");
    let body: LeaseBody;
    let request: airgap.ActivationRequest;
    try {
      request = airgap.readRequest(pending);
      body = openLicenseFileFor(config, this.deploymentKey.publicKey, bytes, request);
    } catch (e) {
      if (e instanceof LeaseError) throw rejected(e.rejection);
      throw e;
    }
    const now = config.time.monotonicMicros();
    const marks: ClockMarks = {
      wallHighWaterUs: Math.max(this.marks.wallHighWaterUs, parseRfc3339Micros(request.clientTime)!, config.time.wallMicros()),
      serverTimeHighWaterUs: Math.max(this.marks.serverTimeHighWaterUs, parseRfc3339Micros(body.issuedAt)!),
    };
    files.writeAtomic(this.clockPath, JSON.stringify(marks));
    files.writeAtomic(path.join(config.stateDir, airgap.LICENSE_FILE), bytes);
    files.removeDurably(path.join(config.stateDir, airgap.PENDING_REQUEST_FILE));
    this.lease = heldLicenseFile(body, marks.serverTimeHighWaterUs, now);
    this.marks = marks;
    this.persisted = { ...marks };
    this.persistedAtUs = now;
    this.invalid = null;
    this.warnings = [];
    return this.status();
  }

  /** Air-gapped usage: writes `reports` (distinct days) to `out` as a usage export signed with the deployment's key, under the license file loaded. No network. */
  exportUsage(reports: UsageReport[], out: string): void {
    const config = this.config;
    const license = storedLicenseFile(config, this.deploymentKey.publicKey);
    if (license === null) throw rejected("missing");
    const createdAtUs = Math.floor(config.time.wallMicros() / 1000) * 1000;
    const file = airgap.usageExport(config, this.deploymentKey, license, reports, formatRfc3339Micros(createdAtUs));
    files.writeAtomic(out, airgap.fileText(file));
  }

  /** Stores a verified fresh lease (marks first, then the lease) and re-anchors the marks to it. */
  private store(signed: unknown, body: LeaseBody, warnings: string[]): void {
    const config = this.config;
    const received = config.time.monotonicMicros();
    const marks: ClockMarks = {
      wallHighWaterUs: Math.max(config.time.wallMicros(), parseRfc3339Micros(body.clientTime!)!),
      serverTimeHighWaterUs: parseRfc3339Micros(body.issuedAt)!,
    };
    const { payload, signature } = signed as { payload: string; signature: string };
    files.writeAtomic(this.clockPath, JSON.stringify(marks));
    files.writeAtomic(this.leasePath, JSON.stringify({ payload, signature }));
    this.lease = heldLease(config, body, marks.serverTimeHighWaterUs, received);
    this.marks = marks;
    this.persisted = { ...marks };
    this.persistedAtUs = received;
    this.invalid = null;
    this.reachedServer = true;
    this.warnings = warnings;
    this.retryNotBeforeUs = null;
  }

  /** The server said "not valid" (signed for this request): forget the lease, in memory first. */
  private dropLease(code: string): Status {
    this.lease = null;
    this.invalid = code;
    this.reachedServer = true;
    this.warnings = [];
    this.retryNotBeforeUs = null;
    files.removeDurably(this.leasePath);
    return { state: "invalid", code };
  }

  /** The code of a refusal signed for this request, or why it is not one to act on. */
  private trustedRefusal(signed: unknown, nonce: string): { code: string } | { ignored: string } {
    if (signed === undefined || signed === null) return { ignored: "it is not signed" };
    let body = null;
    for (const key of this.leaseKeys()) {
      try {
        body = verifyRefusal(signed, key, this.config.licenseKey);
        break;
      } catch {
        continue;
      }
    }
    if (body === null) return { ignored: "it is not signed by a pinned lease key for this license key" };
    if (body.version !== 1) return { ignored: "its format version is not supported" };
    if (body.nonce !== nonce) return { ignored: "it answers another request (its nonce is not this one's)" };
    if (body.deploymentId !== this.config.deploymentId) return { ignored: "it is for another deployment" };
    if (VALID_CODES.has(body.code)) return { ignored: "it carries a valid code" };
    return { code: body.code };
  }

  /** The server could not be reached: judge the stored lease, and write the marks now. */
  private offline(reason: string): Status {
    this.reachedServer = false;
    this.warnings = [reason];
    const status = this.status();
    this.persistMarks();
    return status;
  }

  /** The offline judgement of the stored lease, now. */
  status(): Status {
    return this.judgeNow((verdict) => {
      switch (verdict.kind) {
        case "valid": {
          const body = verdict.lease.body;
          return {
            state: "valid",
            code: body.code,
            tier: body.tier,
            limits: { ...body.limits },
            features: [...body.features],
            leaseExpiresAt: new Date(Math.floor(verdict.lease.expiresAtUs / 1000)),
            offline: !this.reachedServer,
            warnings: [...this.warnings],
          };
        }
        case "invalid":
          return { state: "invalid", code: verdict.code };
        case "clock_tampered":
          return { state: "clock_tampered" };
        case "no_lease":
          return { state: "no_lease" };
      }
    });
  }

  /** One of the four enforcement checks, from the stored lease; without a valid lease nothing is allowed. */
  check(action: Action): Decision {
    return this.judgeNow((verdict): Decision => {
      switch (verdict.kind) {
        case "valid":
          return decide(verdict.lease.body, action);
        case "invalid":
          return { allowed: false, denial: { reason: "invalid", code: verdict.code } };
        case "clock_tampered":
          return { allowed: false, denial: { reason: "clock_tampered" } };
        case "no_lease":
          return { allowed: false, denial: { reason: "no_lease" } };
      }
    });
  }

  /** The seed's `validateLicense()`: validates and says whether the license may be used. */
  async validateLicense(): Promise<boolean> {
    return (await this.validate()).state === "valid";
  }

  /** The seed's `checkFeatureAccess(feature)`. */
  checkFeatureAccess(feature: string): boolean {
    return this.check({ kind: "access_feature", feature }).allowed;
  }

  /** The seed's `checkUsageLimit(metric, currentValue)`: whether one more is allowed at `currentValue`. */
  checkUsageLimit(metric: Metric, currentValue: number): boolean {
    const action: Action =
      metric === "maxUsers"
        ? { kind: "add_user", activeUsers: currentValue }
        : metric === "maxDataVolumeGB"
          ? { kind: "upload_data", dataVolumeGB: currentValue }
          : { kind: "api_call", callsThisMonth: currentValue };
    return this.check(action).allowed;
  }

  /** The keys that verify leases: the pinned ones, then any learned (in memory only). */
  leaseKeys(): KeyObject[] {
    return [...this.config.leasePublicKeys, ...this.learnedKeys];
  }

  private judgeNow<R>(decideWith: (verdict: Verdict) => R): R {
    const config = this.config;
    const now = config.time.monotonicMicros();
    let judgement: Judgement | null = null;
    if (this.invalid === null && this.lease !== null) {
      judgement = judge(this.lease, this.marks, config.time.wallMicros(), now, config.clockToleranceMs * 1000);
    }
    const changed = this.marks.wallHighWaterUs !== this.persisted.wallHighWaterUs ||
      this.marks.serverTimeHighWaterUs !== this.persisted.serverTimeHighWaterUs;
    const persist = this.lease !== null && changed &&
      (now - this.persistedAtUs >= CLOCK_PERSIST_INTERVAL_US ||
        (judgement === "expired" && this.persisted.serverTimeHighWaterUs < this.lease.expiresAtUs));
    let verdict: Verdict;
    if (this.invalid !== null) verdict = { kind: "invalid", code: this.invalid };
    else if (this.lease !== null && judgement === "valid") verdict = { kind: "valid", lease: this.lease };
    else if (this.lease !== null && judgement === "clock_tampered") verdict = { kind: "clock_tampered" };
    else verdict = { kind: "no_lease" };
    const result = decideWith(verdict);
    if (persist) {
      // The next attempt waits a full interval even if this write fails.
      this.persistedAtUs = now;
      this.persistMarks();
    }
    return result;
  }

  /** Writes the marks; a failure is retried by a later check, the verdict stands. */
  private persistMarks(): void {
    try {
      files.writeAtomic(this.clockPath, JSON.stringify(this.marks));
      this.persisted = { ...this.marks };
    } catch {
      // kept raised in memory meanwhile
    }
  }
}

function rejected(rejection: LeaseError["rejection"]): ClientError {
  return new ClientError("lease_rejected", `the server's lease was not accepted: ${rejection}`, { rejection });
}

function heldLease(config: Config, body: LeaseBody, anchorServerUs: number, atUs: number): HeldLease {
  const issuedAtUs = parseRfc3339Micros(body.issuedAt)!;
  const expiresAtUs = Math.min(parseRfc3339Micros(body.leaseExpiresAt)!, issuedAtUs + config.offlineGraceMs * 1000);
  const clientTimeUs = parseRfc3339Micros(body.clientTime!)!;
  return { body, clientTimeUs, issuedAtUs, expiresAtUs, anchorServerUs, anchorAtUs: atUs };
}

/** A license file held as a lease: valid to its own end, not the offline grace. */
function heldLicenseFile(body: LeaseBody, anchorServerUs: number, atUs: number): HeldLease {
  const issuedAtUs = parseRfc3339Micros(body.issuedAt)!;
  const clientTimeUs = parseRfc3339Micros(body.clientTime!)!;
  return { body, clientTimeUs, issuedAtUs, expiresAtUs: parseRfc3339Micros(body.leaseExpiresAt)!, anchorServerUs, anchorAtUs: atUs };
}

/** A license file's document, verified with a pinned key and bound to this license key, deployment, key pair and (when given) request. */
function openLicenseFileFor(config: Config, deploymentKey: string, bytes: Buffer, request: airgap.ActivationRequest | null): LeaseBody {
  const body = airgap.openLicenseFile(bytes, config.leasePublicKeys);
  if (body.keyBinding !== keyBinding(config.licenseKey)) throw new LeaseError("other_key");
  const clientTimeUs = request === null ? null : parseRfc3339Micros(request.clientTime);
  checkBody(body, config, deploymentKey, request?.nonce ?? null, clientTimeUs);
  return { ...body, clientTime: body.clientTime ?? null };
}

/** The stored license file's document, if one still verifies (every check but the nonce). */
function storedLicenseFile(config: Config, deploymentKey: string): LeaseBody | null {
  const bytes = files.readOptional(path.join(config.stateDir, airgap.LICENSE_FILE));
  if (bytes === null) return null;
  try {
    return openLicenseFileFor(config, deploymentKey, bytes, null);
  } catch {
    return null;
  }
}

/** A lease read back from disk: every check of a fresh one but the nonce. Null if it does not pass. */
function loadLease(config: Config, deploymentKey: string, bytes: Buffer | null): LeaseBody | null {
  if (bytes === null) return null;
  try {
    const [body] = verifyLeaseWith(config.leasePublicKeys, JSON.parse(bytes.toString("utf8")), config.licenseKey);
    checkBody(body, config, deploymentKey, null, null);
    return body;
  } catch {
    return null;
  }
}

function checkBody(body: LeaseBody, config: Config, deploymentKey: string, nonce: string | null, clientTimeUs: number | null): void {
  if (body.version !== 1) throw new LeaseError("unsupported_version");
  if (body.deploymentId !== config.deploymentId) throw new LeaseError("other_deployment");
  // Bound to this deployment's own key pair: a lease copied from another machine is of no use here.
  if (body.deploymentKey !== deploymentKey) throw new LeaseError("other_deployment_key");
  if (nonce !== null && nonce !== body.nonce) throw new LeaseError("stale_nonce");
  const signedClientTime = body.clientTime === null ? null : parseRfc3339Micros(body.clientTime);
  if (signedClientTime === null || (clientTimeUs !== null && signedClientTime !== clientTimeUs)) {
    throw new LeaseError("client_time_mismatch");
  }
  if (parseRfc3339Micros(body.issuedAt) === null || parseRfc3339Micros(body.leaseExpiresAt) === null) {
    throw new LeaseError("malformed");
  }
  if (!VALID_CODES.has(body.code)) throw new LeaseError("not_a_valid_code");
}
