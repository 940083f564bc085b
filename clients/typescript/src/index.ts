/**
 * The on-premises license client of the ledger, in TypeScript: validates
 * the deployment's license, keeps working offline on the server's signed
 * lease for its grace, gates features and limits, and reports usage through
 * a durable queue. No run-time dependencies beyond Node's own modules.
 */
export { LicenseManager, LEASE_FILE, CLOCK_FILE, HEARTBEAT_RETRY_MS, type Status, type Metric } from "./license";
export { UsageReporter, USAGE_DIR, REJECTED_DIR, checkReport, type UsageReport, type UsageMetrics, type FlushOutcome } from "./usage";
export { makeConfig, DEFAULT_DEPLOYMENT_ID, LEASE_KEYS_MAX, USAGE_QUEUE_REPORTS_MAX, type Config, type ConfigInput } from "./config";
export { type Action, type Decision, type Denial } from "./enforce";
export { ClientError, LeaseError, type LeaseRejection } from "./errors";
export { parsePublicKey, keyBinding, verifyLease, verifyRefusal, verifyNextKey, type LeaseBody, type LeaseLimits } from "./lease";
export { SystemTime, ManualTime, type TimeSource } from "./time";
export { blake3, deriveKey } from "./blake3";
export { DEPLOYMENT_KEY_FILE } from "./identity";
export { PENDING_REQUEST_FILE, LICENSE_FILE as OFFLINE_LICENSE_FILE, EXPORT_DAYS_MAX } from "./airgap";
