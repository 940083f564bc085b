/** Why a lease (in an answer or in the lease file) was not accepted. */
export type LeaseRejection =
  | "missing"
  | "malformed"
  | "bad_signature"
  | "other_key"
  | "stale_nonce"
  | "other_deployment"
  | "other_deployment_key"
  | "client_time_mismatch"
  | "unsupported_version"
  | "not_a_valid_code";

/**
 * An operating error of the client, typed by `kind`, so callers decide by
 * kind and never by message. Network failures during validation are not
 * errors: they fall back to the offline judgement.
 */
export class ClientError extends Error {
  constructor(
    readonly kind: "config" | "io" | "http" | "protocol" | "lease_rejected" | "queue_full" | "invalid_report",
    message: string,
    readonly detail?: { status?: number; rejection?: LeaseRejection },
  ) {
    super(message);
    this.name = "ClientError";
  }
}

export class LeaseError extends Error {
  constructor(readonly rejection: LeaseRejection) {
    super(`the lease was not accepted: ${rejection}`);
    this.name = "LeaseError";
  }
}
