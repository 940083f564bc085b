/** How a deployment is set up: one object, filled at install time. */
import type { KeyObject } from "node:crypto";

import { ClientError } from "./errors";
import { LICENSE_KEY_CHARS_MAX, parsePublicKey } from "./lease";
import { SystemTime, type TimeSource } from "./time";

export const DEFAULT_DEPLOYMENT_ID = "default";
/** How many lease keys the client holds at most. */
export const LEASE_KEYS_MAX = 8;
/** How many usage reports may wait in the queue by default. */
export const USAGE_QUEUE_REPORTS_MAX = 10_000;
/** The longest offline grace (BILLING-RULES: 7 days). */
export const OFFLINE_GRACE_MS_MAX = 7 * 24 * 3600 * 1000;
const DEPLOYMENT_ID_CHARS_MAX = 128;

export interface ConfigInput {
  /** The server, e.g. `https://ledger.example.com`. */
  baseUrl: string;
  licenseKey: string;
  /** Where the lease, the clock marks and the usage queue live. One process per directory. */
  stateDir: string;
  /** The server's lease keys pinned at install (base64, as GET /api/v1/keys shows them). */
  leasePublicKeys: (string | KeyObject)[];
  /** Which deployment of the license this is: 1 to 128 visible ASCII characters. */
  deploymentId?: string;
  /** The longest the client works offline after a validation (at most 7 days). */
  offlineGraceMs?: number;
  /** How far the wall clock may step back (NTP) before it is tampering. */
  clockToleranceMs?: number;
  requestTimeoutMs?: number;
  clientVersion?: string;
  /** Allow a plain http:// baseUrl (a server on the same host or a trusted network only). */
  allowPlainHttp?: boolean;
  /**
   * After a lease verified with a PINNED key, read GET /api/v1/keys and hold
   * the server's announced next lease key in memory, but only when the key
   * that verified the lease signed it (`leases.nextSignature`). Off by default.
   */
  learnLeaseKeys?: boolean;
  usageQueueMax?: number;
  /**
   * A floating deployment (a container that comes and goes): each validation
   * is a heartbeat; it holds its place of the key's maxDeployments only while
   * it sends them, and its lease ends with its place (an hour by default).
   * Send them with heartbeat() every heartbeatIntervalMs(), or let
   * startHeartbeats() do it. The operator must allow the subscription
   * floating deployments. Off by default.
   */
  floating?: boolean;
  time?: TimeSource;
}

export interface Config {
  baseUrl: string;
  licenseKey: string;
  stateDir: string;
  leasePublicKeys: KeyObject[];
  deploymentId: string;
  offlineGraceMs: number;
  clockToleranceMs: number;
  requestTimeoutMs: number;
  clientVersion: string;
  allowPlainHttp: boolean;
  learnLeaseKeys: boolean;
  usageQueueMax: number;
  floating: boolean;
  time: TimeSource;
}

function problem(c: Config): string | null {
  if (!/^https?:\/\//.test(c.baseUrl)) return "baseUrl must start with http:// or https://";
  if (c.baseUrl.startsWith("http://") && !c.allowPlainHttp) return "a plain http:// baseUrl needs allowPlainHttp";
  if (c.licenseKey.length === 0 || c.licenseKey.length > LICENSE_KEY_CHARS_MAX) return "licenseKey must be 1 to 512 characters";
  if (c.deploymentId.length === 0 || c.deploymentId.length > DEPLOYMENT_ID_CHARS_MAX || !/^[\x21-\x7e]+$/.test(c.deploymentId)) {
    return "deploymentId must be 1 to 128 visible ASCII characters";
  }
  if (c.leasePublicKeys.length === 0) return "at least one lease public key must be pinned";
  if (c.leasePublicKeys.length > LEASE_KEYS_MAX) return "too many lease public keys";
  if (!(c.offlineGraceMs > 0 && c.offlineGraceMs <= OFFLINE_GRACE_MS_MAX)) return "offlineGraceMs must be more than 0 and at most 7 days";
  if (!(c.clockToleranceMs >= 0 && c.clockToleranceMs < c.offlineGraceMs)) return "clockToleranceMs must be shorter than offlineGraceMs";
  if (!(c.requestTimeoutMs > 0 && c.requestTimeoutMs <= 300_000)) return "requestTimeoutMs must be more than 0 and at most 300000";
  if (!(Number.isSafeInteger(c.usageQueueMax) && c.usageQueueMax >= 1 && c.usageQueueMax <= 1_000_000)) return "usageQueueMax must be 1 to 1000000";
  return null;
}

/** Fills the defaults and checks: a misconfiguration is refused at start, not discovered offline. */
export function makeConfig(input: ConfigInput): Config {
  let keys: KeyObject[];
  try {
    keys = input.leasePublicKeys.map((k) => (typeof k === "string" ? parsePublicKey(k) : k));
  } catch (e) {
    throw new ClientError("config", `invalid configuration: a lease public key: ${(e as Error).message}`);
  }
  const config: Config = {
    baseUrl: input.baseUrl.replace(/\/+$/, ""),
    licenseKey: input.licenseKey,
    stateDir: input.stateDir,
    leasePublicKeys: keys,
    deploymentId: input.deploymentId ?? DEFAULT_DEPLOYMENT_ID,
    offlineGraceMs: input.offlineGraceMs ?? OFFLINE_GRACE_MS_MAX,
    clockToleranceMs: input.clockToleranceMs ?? 5 * 60 * 1000,
    requestTimeoutMs: input.requestTimeoutMs ?? 10_000,
    clientVersion: input.clientVersion ?? "ts-0.1.0",
    allowPlainHttp: input.allowPlainHttp ?? false,
    learnLeaseKeys: input.learnLeaseKeys ?? false,
    usageQueueMax: input.usageQueueMax ?? USAGE_QUEUE_REPORTS_MAX,
    floating: input.floating ?? false,
    time: input.time ?? new SystemTime(),
  };
  const why = problem(config);
  if (why !== null) throw new ClientError("config", `invalid configuration: ${why}`);
  // The license key is a secret: never in logs (console.log, util.inspect, JSON.stringify).
  const redacted = () => ({ ...config, licenseKey: "<redacted>", leasePublicKeys: config.leasePublicKeys.length });
  Object.defineProperty(config, Symbol.for("nodejs.util.inspect.custom"), { value: redacted, enumerable: false });
  Object.defineProperty(config, "toJSON", { value: redacted, enumerable: false });
  return config;
}
