/**
 * The deployment's own key pair (issue 18 item 2), as the Rust client keeps
 * it (`client/src/identity.rs`): an Ed25519 key made on the first run, its
 * 32-byte seed in the state directory (DEPLOYMENT_KEY_FILE, mode 0600). The
 * client signs the server's challenge with it at every validation and
 * accepts only leases bound to its public key, so a lease copied to another
 * machine is of no use there.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createPrivateKey, createPublicKey, randomBytes, sign, type KeyObject } from "node:crypto";

import { ClientError } from "./errors";
import { readOptional } from "./files";

/** The deployment's private key (its 32-byte seed) in the state directory. */
export const DEPLOYMENT_KEY_FILE = "deployment.ed25519";
/** Signed before every proof of a deployment key (`domain::deployment_key`). */
export const PROOF_DOMAIN = Buffer.from("ledger 2026-12-01 deployment proof v1\0", "latin1");
/** The length of a challenge the server mints (base64url of 56 bytes). */
export const CHALLENGE_CHARS = 75;
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

export interface DeploymentKey {
  privateKey: KeyObject;
  /** base64url (no padding) of the 32-byte public key, as the server binds it. */
  publicKey: string;
}

function fromSeed(file: string, seed: Buffer): DeploymentKey {
  if (seed.length !== 32) throw new ClientError("io", `${file}: a deployment key file holds 32 bytes`);
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: "der", type: "pkcs8" });
  const spki = createPublicKey(privateKey).export({ format: "der", type: "spki" });
  return { privateKey, publicKey: spki.subarray(spki.length - 32).toString("base64url") };
}

/**
 * The deployment's key: read from the state directory, or made and written
 * there on the first run (a temporary file, 0600, fsynced, hard-linked to
 * its name, which fails if the name exists: nothing is ever overwritten).
 */
export function loadOrCreate(dir: string): DeploymentKey {
  const file = path.join(dir, DEPLOYMENT_KEY_FILE);
  const existing = readOptional(file);
  if (existing !== null) return fromSeed(file, existing);
  const temp = path.join(dir, `.${DEPLOYMENT_KEY_FILE}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    const fd = fs.openSync(temp, "wx", 0o600);
    try {
      fs.writeSync(fd, randomBytes(32));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.linkSync(temp, file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const dirFd = fs.openSync(dir, "r");
    try {
      fs.fsyncSync(dirFd);
    } finally {
      fs.closeSync(dirFd);
    }
  } catch (e) {
    throw new ClientError("io", `${file}: ${(e as Error).message}`);
  } finally {
    fs.rmSync(temp, { force: true });
  }
  return fromSeed(file, readOptional(file) ?? Buffer.alloc(0));
}

/** The deployment key's signature (base64url) over one challenge, license key binding, deployment and nonce. */
export function signProof(key: DeploymentKey, challenge: string, keyBinding: string, deploymentId: string, nonce: string): string {
  const message = Buffer.concat([
    PROOF_DOMAIN,
    Buffer.from(`${challenge}\0${keyBinding}\0${deploymentId}\0${nonce}`, "utf8"),
  ]);
  return sign(null, message, key.privateKey).toString("base64url");
}
