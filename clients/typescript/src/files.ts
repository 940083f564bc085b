/**
 * Durable small files: what the client promises to remember (the lease,
 * the clock marks, queued usage reports) survives a crash at any instant,
 * whole or not at all.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";

import { ClientError } from "./errors";

/** The largest file read back; the client's own files are a few KiB. */
export const STATE_FILE_BYTES_MAX = 1 << 20;

function ioError(file: string, e: unknown): ClientError {
  return new ClientError("io", `${file}: ${e instanceof Error ? e.message : String(e)}`);
}

function syncDir(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** A temporary beside `file`, fsynced, renamed over it, the directory fsynced. */
export function writeAtomic(file: string, bytes: Buffer | string): void {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    const fd = fs.openSync(temp, "wx", 0o600);
    try {
      fs.writeSync(fd, typeof bytes === "string" ? Buffer.from(bytes) : bytes);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
    syncDir(path.dirname(file));
  } catch (e) {
    fs.rmSync(temp, { force: true });
    throw ioError(file, e);
  }
}

/** A state file's bytes, null if it does not exist. */
export function readOptional(file: string): Buffer | null {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw ioError(file, e);
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size > STATE_FILE_BYTES_MAX) throw ioError(file, new Error("larger than any file the client writes"));
    const buffer = Buffer.alloc(size);
    let read = 0;
    while (read < size) {
      const n = fs.readSync(fd, buffer, read, size - read, read);
      if (n === 0) break;
      read += n;
    }
    return buffer.subarray(0, read);
  } finally {
    fs.closeSync(fd);
  }
}

/** Removes `file` durably; a file already gone is not an error. */
export function removeDurably(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw ioError(file, e);
  }
  syncDir(path.dirname(file));
}

export function createDir(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw ioError(dir, e);
  }
}

/** Leftovers of a write interrupted by a crash: never a file of record. */
export function isTemporary(name: string): boolean {
  return name.startsWith(".") && name.endsWith(".tmp");
}

export function removeTemporaries(dir: string): void {
  for (const name of fs.readdirSync(dir)) {
    if (isTemporary(name)) fs.rmSync(path.join(dir, name), { force: true });
  }
}
