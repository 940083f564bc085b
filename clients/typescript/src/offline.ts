/**
 * The offline judgement, as the Rust client's `offline` module (read its
 * documentation for the threat model): may this deployment keep working on
 * the lease it holds without asking the server?
 *
 * The estimate of the server's time now is the LARGEST of issuedAt +
 * monotonic time since receipt, issuedAt + (max(wall, wall mark) −
 * clientTime), and the server-time mark. Because it is a maximum, setting
 * the clock back never makes time pass slower. A wall clock more than the
 * tolerance earlier than the wall mark or the signed clientTime is
 * tampering: nothing is allowed until it is put right or the server is
 * reached again. Pure arithmetic.
 */
import type { LeaseBody } from "./lease";

/** How often, at most, a check writes the high-water marks to disk (µs). */
export const CLOCK_PERSIST_INTERVAL_US = 60_000_000;

/** A lease that verified, and what the judgement needs from it. */
export interface HeldLease {
  body: LeaseBody;
  clientTimeUs: number;
  issuedAtUs: number;
  /** leaseExpiresAt, capped by the configured offline grace. */
  expiresAtUs: number;
  /** At monotonic `anchorAtUs` the server's time was at least `anchorServerUs`. */
  anchorServerUs: number;
  anchorAtUs: number;
}

/** The high-water marks, as stored in clock.json (same shape as the Rust client's). */
export interface ClockMarks {
  wallHighWaterUs: number;
  serverTimeHighWaterUs: number;
}

export type Judgement = "valid" | "expired" | "clock_tampered";

/** Judges `lease` at wall time `wallUs` and monotonic `nowUs`, raising `marks`. */
export function judge(lease: HeldLease, marks: ClockMarks, wallUs: number, nowUs: number, toleranceUs: number): Judgement {
  if (wallUs + toleranceUs < marks.wallHighWaterUs || wallUs + toleranceUs < lease.clientTimeUs) {
    return "clock_tampered";
  }
  marks.wallHighWaterUs = Math.max(marks.wallHighWaterUs, wallUs);
  const byMonotonic = lease.anchorServerUs + Math.max(0, nowUs - lease.anchorAtUs);
  const byWall = lease.issuedAtUs + (marks.wallHighWaterUs - lease.clientTimeUs);
  const estimate = Math.max(byMonotonic, byWall, marks.serverTimeHighWaterUs);
  marks.serverTimeHighWaterUs = estimate;
  return estimate < lease.expiresAtUs ? "valid" : "expired";
}

/** clock.json as written; anything else reads as absent. */
export function parseMarks(bytes: Buffer | null): ClockMarks | null {
  if (bytes === null) return null;
  try {
    const v = JSON.parse(bytes.toString("utf8")) as Record<string, unknown>;
    const keys = Object.keys(v).sort().join(",");
    if (keys !== "serverTimeHighWaterUs,wallHighWaterUs") return null;
    if (!Number.isSafeInteger(v.wallHighWaterUs) || !Number.isSafeInteger(v.serverTimeHighWaterUs)) return null;
    return { wallHighWaterUs: v.wallHighWaterUs as number, serverTimeHighWaterUs: v.serverTimeHighWaterUs as number };
  } catch {
    return null;
  }
}
