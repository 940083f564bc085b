/**
 * Where the client reads time. Two clocks for two questions: `wallMicros`
 * is the calendar the machine's owner can set to anything; `monotonicMicros`
 * only moves forward while the process runs and cannot be set, but means
 * nothing across a restart. The offline judgement uses each for what it
 * can be trusted with (see offline.ts).
 */
export interface TimeSource {
  /** The machine's calendar clock, microseconds since the epoch. */
  wallMicros(): number;
  /** A clock that never goes back while the process runs, microseconds. */
  monotonicMicros(): number;
}

/** The operating system's clocks. */
export class SystemTime implements TimeSource {
  wallMicros(): number {
    return Date.now() * 1000;
  }
  monotonicMicros(): number {
    return Number(process.hrtime.bigint() / 1000n);
  }
}

/** A clock that moves only when told to: for tests and simulations. */
export class ManualTime implements TimeSource {
  private wall: number;
  private monotonic = 0;
  constructor(wall: Date) {
    this.wall = wall.getTime() * 1000;
  }
  /** Real time passing: both clocks move forward. */
  advance(ms: number): void {
    this.wall += ms * 1000;
    this.monotonic += ms * 1000;
  }
  /** Someone sets the calendar clock; the monotonic clock does not notice. */
  setWall(wall: Date): void {
    this.wall = wall.getTime() * 1000;
  }
  wallMicros(): number {
    return this.wall;
  }
  monotonicMicros(): number {
    return this.monotonic;
  }
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$/;

/** An RFC 3339 time as microseconds since the epoch (exact to the µs); null if not one. */
export function parseRfc3339Micros(text: string): number | null {
  const m = RFC3339.exec(text);
  if (!m) return null;
  const [, y, mo, d, h, mi, s, frac = "", zone = "Z"] = m;
  const seconds = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)) / 1000;
  if (!Number.isFinite(seconds)) return null;
  const micros = Number((frac + "000000").slice(0, 6));
  let offset = 0;
  if (zone !== "Z" && zone !== "z") {
    const sign = zone.startsWith("-") ? -1 : 1;
    offset = sign * (Number(zone.slice(1, 3)) * 3600 + Number(zone.slice(4, 6)) * 60);
  }
  return (seconds - offset) * 1_000_000 + micros;
}

/** Microseconds since the epoch as RFC 3339 UTC with six decimals. */
export function formatRfc3339Micros(micros: number): string {
  const ms = Math.floor(micros / 1000);
  const rest = micros - ms * 1000;
  const iso = new Date(ms).toISOString(); // …T12:34:56.789Z
  return `${iso.slice(0, -1)}${String(rest).padStart(3, "0")}Z`;
}
