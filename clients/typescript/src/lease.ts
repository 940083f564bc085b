/**
 * The server's signed documents (`domain::lease`): a lease, a refusal and
 * the announcement of the next lease key. Each is Ed25519 over a domain
 * prefix ‖ the JSON document's bytes; the bytes travel base64url (no
 * padding), so the signature covers exactly what was signed.
 */
import { KeyObject, createPublicKey, timingSafeEqual, verify } from "node:crypto";

import { deriveKey } from "./blake3";
import { LeaseError } from "./errors";

export const LEASE_DOMAIN = Buffer.from("ledger 2026-11-29 lease v1\0", "latin1");
export const REFUSAL_DOMAIN = Buffer.from("ledger 2026-11-29 refusal v1\0", "latin1");
export const NEXT_KEY_DOMAIN = Buffer.from("ledger 2026-11-29 next lease key v1\0", "latin1");
const KEY_BINDING_CONTEXT = "ledger 2026-11-29 lease key binding v1";
/** The DER prefix of an Ed25519 SubjectPublicKeyInfo, before the 32 key bytes. */
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
/** The longest document read: the server's are well under 4 KiB. */
const DOCUMENT_BYTES_MAX = 64 * 1024;
/** Issued license keys are short; BLAKE3 here hashes one chunk. */
export const LICENSE_KEY_CHARS_MAX = 512;

export interface LeaseLimits {
  maxUsers: number;
  maxDataVolumeGB: number;
  maxApiCalls: number;
  modelSize: string;
}

/** The signed lease document (camelCase, as the server writes it). */
export interface LeaseBody {
  version: number;
  licenseId: string;
  organizationId: string;
  keyBinding: string;
  deploymentId: string;
  nonce: string;
  clientTime: string | null;
  issuedAt: string;
  leaseExpiresAt: string;
  code: string;
  tier: string;
  limits: LeaseLimits;
  features: string[];
  /** A floating deployment's: send a heartbeat this often; its lease ends with its place. Absent for a fixed one. */
  heartbeatIntervalSeconds?: number;
  /** The deployment key the lease is bound to (base64url); absent when the request presented none. */
  deploymentKey?: string;
}

export interface RefusalBody {
  version: number;
  keyBinding: string;
  deploymentId: string;
  nonce: string;
  code: string;
  issuedAt: string;
}

/** A lease or refusal as it travels. */
export interface SignedDocument {
  payload: string;
  signature: string;
}

/** A hash of the license key that binds a lease to it (hex BLAKE3 derive_key). */
export function keyBinding(licenseKey: string): string {
  return deriveKey(KEY_BINDING_CONTEXT, Buffer.from(licenseKey, "utf8")).toString("hex");
}

/** A public key as `GET /api/v1/keys` shows it: standard base64 of 32 bytes. */
export function parsePublicKey(text: string): KeyObject {
  const raw = Buffer.from(text.trim(), "base64");
  if (raw.length !== 32 || raw.toString("base64") !== text.trim()) {
    throw new RangeError("a public key is 32 bytes of standard base64");
  }
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: "der", type: "spki" });
}

/** The 32 raw bytes of an Ed25519 public key. */
export function rawPublicKey(key: KeyObject): Buffer {
  return key.export({ format: "der", type: "spki" }).subarray(ED25519_SPKI_PREFIX.length);
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

function base64url(text: unknown): Buffer {
  if (typeof text !== "string" || !BASE64URL.test(text) || text.length > (DOCUMENT_BYTES_MAX * 4) / 3 + 4) {
    throw new LeaseError("malformed");
  }
  return Buffer.from(text, "base64url");
}

/** Checks a document's signature under `domain` and reads its JSON. */
function verifyDocument(domain: Buffer, signed: unknown, key: KeyObject): unknown {
  if (typeof signed !== "object" || signed === null) throw new LeaseError("malformed");
  const { payload, signature } = signed as Partial<SignedDocument>;
  const bytes = base64url(payload);
  const sig = base64url(signature);
  if (sig.length !== 64) throw new LeaseError("malformed");
  if (!verify(null, Buffer.concat([domain, bytes]), key, sig)) throw new LeaseError("bad_signature");
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new LeaseError("malformed");
  }
}

function boundTo(binding: unknown, licenseKey: string): void {
  const expected = Buffer.from(keyBinding(licenseKey), "utf8");
  const given = Buffer.from(typeof binding === "string" ? binding : "", "utf8");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new LeaseError("other_key");
}

const isString = (v: unknown): v is string => typeof v === "string";
const isInt = (v: unknown): v is number => Number.isSafeInteger(v);

function wellFormedLease(body: unknown): body is LeaseBody {
  const b = body as Record<string, unknown> | null;
  if (typeof b !== "object" || b === null) return false;
  const limits = b.limits as Record<string, unknown> | null;
  return (
    isInt(b.version) && isString(b.licenseId) && isString(b.organizationId) && isString(b.keyBinding) &&
    isString(b.deploymentId) && isString(b.nonce) && (b.clientTime === null || b.clientTime === undefined || isString(b.clientTime)) &&
    isString(b.issuedAt) && isString(b.leaseExpiresAt) && isString(b.code) && isString(b.tier) &&
    typeof limits === "object" && limits !== null && isInt(limits.maxUsers) && isInt(limits.maxDataVolumeGB) &&
    isInt(limits.maxApiCalls) && isString(limits.modelSize) &&
    Array.isArray(b.features) && b.features.every(isString) &&
    (b.heartbeatIntervalSeconds === undefined || (isInt(b.heartbeatIntervalSeconds) && b.heartbeatIntervalSeconds > 0))
  );
}

function wellFormedRefusal(body: unknown): body is RefusalBody {
  const b = body as Record<string, unknown> | null;
  return (
    typeof b === "object" && b !== null && isInt(b.version) && isString(b.keyBinding) && isString(b.deploymentId) &&
    isString(b.nonce) && isString(b.code) && isString(b.issuedAt)
  );
}

/** A lease signed by `key` and issued to `licenseKey`; throws LeaseError otherwise. */
export function verifyLease(signed: unknown, key: KeyObject, licenseKey: string): LeaseBody {
  const body = verifyDocument(LEASE_DOMAIN, signed, key);
  if (!wellFormedLease(body)) throw new LeaseError("malformed");
  boundTo(body.keyBinding, licenseKey);
  return { ...body, clientTime: body.clientTime ?? null };
}

/** A refusal signed by `key` answering a request for `licenseKey`. */
export function verifyRefusal(signed: unknown, key: KeyObject, licenseKey: string): RefusalBody {
  const body = verifyDocument(REFUSAL_DOMAIN, signed, key);
  if (!wellFormedRefusal(body)) throw new LeaseError("malformed");
  boundTo(body.keyBinding, licenseKey);
  return body;
}

/**
 * Verifies with each key in turn: the body and the key that verified it.
 * A lease that is malformed, or signed but for another license key, is
 * refused at once: no other key changes that.
 */
export function verifyLeaseWith(keys: KeyObject[], signed: unknown, licenseKey: string): [LeaseBody, KeyObject] {
  for (const key of keys) {
    try {
      return [verifyLease(signed, key, licenseKey), key];
    } catch (e) {
      if (e instanceof LeaseError && e.rejection === "bad_signature") continue;
      throw e;
    }
  }
  throw new LeaseError("bad_signature");
}

/** Whether `signature` is `current`'s announcement of `next` as the next lease key. */
export function verifyNextKey(current: KeyObject, next: KeyObject, signature: Buffer): boolean {
  if (signature.length !== 64) return false;
  const message = Buffer.concat([NEXT_KEY_DOMAIN, rawPublicKey(current), rawPublicKey(next)]);
  return verify(null, message, current, signature);
}
