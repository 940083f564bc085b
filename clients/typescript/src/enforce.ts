/**
 * The four enforcement checks of BILLING-RULES ("Enforcement", the seed's
 * `validateUsage`), decided from the signed lease so they work offline, by
 * the same rules as the server (`domain::enforcement::decide`): the usage
 * given must be below the limit; -1 is unlimited; any other negative limit
 * is not in the contract and denies (fail closed).
 */
import type { LeaseBody } from "./lease";

/** Something the deployment is about to do, with the usage it has now. */
export type Action =
  | { kind: "add_user"; activeUsers: number }
  | { kind: "upload_data"; dataVolumeGB: number }
  | { kind: "api_call"; callsThisMonth: number }
  | { kind: "access_feature"; feature: string };

export type Denial =
  | { reason: "no_lease" }
  | { reason: "clock_tampered" }
  | { reason: "invalid"; code: string }
  | { reason: "limit_reached"; limit: number }
  | { reason: "feature_not_included" };

export type Decision = { allowed: true } | { allowed: false; denial: Denial };

export const ALLOWED: Decision = { allowed: true };

function against(limit: number, current: number): Decision {
  if (limit === -1) return ALLOWED;
  const max = Number.isSafeInteger(limit) && limit >= 0 ? limit : 0;
  // A usage that is not a number is not below anything.
  return Number.isFinite(current) && current < max ? ALLOWED : { allowed: false, denial: { reason: "limit_reached", limit } };
}

/** Decides `action` under a lease already judged valid. */
export function decide(lease: LeaseBody, action: Action): Decision {
  const limits = lease.limits;
  switch (action.kind) {
    case "add_user":
      return against(limits.maxUsers, action.activeUsers);
    case "upload_data":
      return against(limits.maxDataVolumeGB, action.dataVolumeGB);
    case "api_call":
      return against(limits.maxApiCalls, action.callsThisMonth);
    case "access_feature":
      return lease.features.includes(action.feature)
        ? ALLOWED
        : { allowed: false, denial: { reason: "feature_not_included" } };
  }
}
