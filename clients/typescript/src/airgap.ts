/**
 * Air-gapped sites (issue 18 item 1), as the Rust client's `airgap` module
 * (`client/src/airgap.rs`; the formats are in ARCHITECTURE.md, "Air-gapped
 * sites"): the activation request a deployment writes, the license file
 * the server answers with, and the usage export. Each file is
 * `{format, payload, signature}`: the base64url bytes of a JSON document
 * and an Ed25519 signature over a domain prefix ‖ those bytes. No network.
 */
import { randomBytes, sign, verify, type KeyObject } from "node:crypto";

import type { Config } from "./config";
import { ClientError, LeaseError } from "./errors";
import type { DeploymentKey } from "./identity";
import { keyBinding, type LeaseBody } from "./lease";
import type { UsageReport } from "./usage";

export const ACTIVATION_REQUEST_FORMAT = "ledger-offline-activation-request";
export const LICENSE_FILE_FORMAT = "ledger-offline-license";
export const USAGE_EXPORT_FORMAT = "ledger-usage-export";
const ACTIVATION_REQUEST_DOMAIN = Buffer.from("ledger 2026-12-01 offline activation request v1\0", "latin1");
const LICENSE_FILE_DOMAIN = Buffer.from("ledger 2026-12-01 offline license file v1\0", "latin1");
const USAGE_EXPORT_DOMAIN = Buffer.from("ledger 2026-12-01 usage export v1\0", "latin1");
/** The largest file of any kind, in bytes. */
export const FILE_BYTES_MAX = 48 * 1024;
/** The most days one usage export may carry. */
export const EXPORT_DAYS_MAX = 130;
/** The activation request last written, until its license file is loaded. */
export const PENDING_REQUEST_FILE = "offline-request.json";
/** The license file loaded, exactly as the server signed it. */
export const LICENSE_FILE = "offline-license.json";

export interface SignedFile {
  format: string;
  payload: string;
  signature: string;
}

export interface ActivationRequest {
  version: number;
  licenseId: string;
  keyBinding: string;
  deploymentId: string;
  deploymentKey: string;
  nonce: string;
  clientTime: string;
}

/** The license id a key names, read without its signature (`LK1-` + base64url of version, id, nonce, signature: 1 + 16 + 16 + 64 bytes). */
export function licenseIdOf(licenseKey: string): string {
  const bytes = Buffer.from(licenseKey.startsWith("LK1-") ? licenseKey.slice(4) : "", "base64url");
  if (bytes.length !== 97 || bytes[0] !== 1) throw new ClientError("config", "the license key is not well-formed");
  const hex = bytes.subarray(1, 17).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function signed(format: string, domain: Buffer, body: unknown, key: KeyObject): SignedFile {
  const bytes = Buffer.from(JSON.stringify(body), "utf8");
  const signature = sign(null, Buffer.concat([domain, bytes]), key);
  return { format, payload: bytes.toString("base64url"), signature: signature.toString("base64url") };
}

/** A file as written to disk: JSON and a newline. */
export function fileText(file: SignedFile): string {
  return `${JSON.stringify(file, null, 2)}\n`;
}

/** A new activation request of this deployment, signed with its key. */
export function activationRequest(config: Config, key: DeploymentKey, clientTime: string): SignedFile {
  const request: ActivationRequest = {
    version: 1,
    licenseId: licenseIdOf(config.licenseKey),
    keyBinding: keyBinding(config.licenseKey),
    deploymentId: config.deploymentId,
    deploymentKey: key.publicKey,
    nonce: randomBytes(16).toString("base64url"),
    clientTime,
  };
  return signed(ACTIVATION_REQUEST_FORMAT, ACTIVATION_REQUEST_DOMAIN, request, key.privateKey);
}

function parseFile(bytes: Buffer, format: string): SignedFile {
  if (bytes.length > FILE_BYTES_MAX) throw new LeaseError("malformed");
  let file: Partial<SignedFile>;
  try {
    file = JSON.parse(bytes.toString("utf8")) as Partial<SignedFile>;
  } catch {
    throw new LeaseError("malformed");
  }
  if (file.format !== format || typeof file.payload !== "string" || typeof file.signature !== "string") {
    throw new LeaseError("malformed");
  }
  return file as SignedFile;
}

/** The pending request this deployment wrote (its own file, not verified again). */
export function readRequest(bytes: Buffer): ActivationRequest {
  const file = parseFile(bytes, ACTIVATION_REQUEST_FORMAT);
  return JSON.parse(Buffer.from(file.payload, "base64url").toString("utf8")) as ActivationRequest;
}

/**
 * A license file's document, once it verifies with one of `keys` (the
 * pinned lease keys); its binding to the license key, deployment, key pair
 * and request is the caller's to check (checkBody). Throws LeaseError.
 */
export function openLicenseFile(bytes: Buffer, keys: KeyObject[]): LeaseBody {
  const file = parseFile(bytes, LICENSE_FILE_FORMAT);
  const payload = Buffer.from(file.payload, "base64url");
  const signature = Buffer.from(file.signature, "base64url");
  if (signature.length !== 64) throw new LeaseError("malformed");
  const message = Buffer.concat([LICENSE_FILE_DOMAIN, payload]);
  if (!keys.some((key) => verify(null, message, key, signature))) throw new LeaseError("bad_signature");
  try {
    return JSON.parse(payload.toString("utf8")) as LeaseBody;
  } catch {
    throw new LeaseError("malformed");
  }
}

/** A number as the decimal text a report sends (at most two decimals). */
function decimal(value: number): string {
  return Number.isInteger(value) ? String(value) : String(Math.round(value * 100) / 100);
}

/** A usage export of `reports` under the license file `license`, signed with the deployment's key. */
export function usageExport(config: Config, key: DeploymentKey, license: LeaseBody, reports: UsageReport[], createdAt: string): SignedFile {
  const days = new Set(reports.map((r) => r.reportingPeriod));
  if (reports.length === 0 || reports.length > EXPORT_DAYS_MAX || days.size !== reports.length) {
    throw new ClientError("invalid_report", `an export holds 1 to ${EXPORT_DAYS_MAX} distinct days`);
  }
  const body = {
    version: 1,
    licenseId: license.licenseId,
    keyBinding: keyBinding(config.licenseKey),
    deploymentId: config.deploymentId,
    deploymentKey: key.publicKey,
    licenseNonce: license.nonce,
    exportId: randomBytes(16).toString("base64url"),
    createdAt,
    days: reports.map((r) => ({
      day: r.reportingPeriod,
      activeUsers: decimal(r.metrics.activeUsers),
      dataVolumeGB: decimal(r.metrics.dataVolumeGB),
      apiCallsCount: decimal(r.metrics.apiCallsCount),
      trainingHours: decimal(r.metrics.trainingHours),
    })),
  };
  return signed(USAGE_EXPORT_FORMAT, USAGE_EXPORT_DOMAIN, body, key.privateKey);
}
