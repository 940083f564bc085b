"""Independent check of the ledger record format test vectors.

Written from ARCHITECTURE.md ("The record format (version 1)" and "(version
2)") alone, without reading the Rust implementation: it rebuilds each
record's canonical header bytes from the individual JSON fields and
recomputes the metadata, payload, leaf and chain hashes (BLAKE3 derive_key
mode), then compares them with the expected values in
domain/tests/vectors/records-v1.json, in domain/tests/vectors/records-v2.json
(version 2 records with salted content hashes continuing a version 1 chain,
one of them erased) and in domain/tests/vectors/events-v1.json (one record
of every stored event type and schema version, chained the same way;
"Stored events").

An erased record (salt, metadata and payload null) is checked for what is
left: its stored content hashes go into the leaf, the leaf into the chain.

Usage: python3 tools/verify_vectors.py [VECTORS_JSON ...]
"""
import copy
import json
import struct
import sys
import uuid
from pathlib import Path

import blake3

# Hard-coded from ARCHITECTURE.md, never read from the vectors file.
CONTEXTS = {
    "metadata": "ledger 2026-11-29 record metadata v1",
    "payload": "ledger 2026-11-29 record payload v1",
    "leaf": "ledger 2026-11-29 record leaf v1",
    "chain": "ledger 2026-11-29 record chain v1",
}
# Version 2's content hashes: over salt || bytes.
CONTEXTS_V2 = {
    **CONTEXTS,
    "metadata_v2": "ledger 2026-12-01 record metadata v2",
    "payload_v2": "ledger 2026-12-01 record payload v2",
}
SALT_BYTES = 32
CHAIN_0 = bytes(32)
VECTORS = Path(__file__).resolve().parent.parent / "domain/tests/vectors"
DEFAULT = [VECTORS / "records-v1.json", VECTORS / "records-v2.json", VECTORS / "events-v1.json"]


def h(kind: str, data: bytes) -> bytes:
    return blake3.blake3(data, derive_key_context=CONTEXTS_V2[kind]).digest()


def string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<I", len(b)) + b


def header_bytes(r: dict, fmt: int) -> bytes:
    u = uuid.UUID(r["event_id"])
    if str(u) != r["event_id"]:
        raise ValueError(f"event_id not in canonical text form: {r['event_id']!r}")
    key = r["idempotency_key"]
    return b"".join([
        bytes([fmt]),                              # 1 format version
        struct.pack("<Q", r["sequence"]),          # 2 sequence
        u.bytes,                                   # 3 event id (RFC 9562 order)
        string(r["stream_id"]),                    # 4 stream id
        struct.pack("<Q", r["stream_revision"]),   # 5 stream revision
        string(r["event_type"]),                   # 6 event type
        struct.pack("<I", r["schema_version"]),    # 7 schema version
        struct.pack("<q", r["occurred_at_us"]),    # 8 occurred at (i64)
        struct.pack("<q", r["recorded_at_us"]),    # 9 recorded at (i64)
        b"\x00" if key is None else b"\x01" + string(key),  # 10 idempotency key
    ])


def content_hashes(r: dict, fmt: int) -> tuple:
    """The metadata and payload hashes: recomputed from the bytes, or, for an
    erased record (salt, metadata and payload all null), the stored ones."""
    salt, metadata, payload = r.get("salt_hex"), r["metadata_hex"], r["payload_hex"]
    if salt is None and metadata is None and payload is None:
        return bytes.fromhex(r["metadata_hash"]), bytes.fromhex(r["payload_hash"])
    if metadata is None or payload is None:
        raise ValueError("metadata and payload are erased together, with the salt")
    if fmt == 1:
        if salt is not None:
            raise ValueError("a version 1 record has no salt")
        return h("metadata", bytes.fromhex(metadata)), h("payload", bytes.fromhex(payload))
    if salt is None:
        raise ValueError("a version 2 record holding content has a salt")
    salt = bytes.fromhex(salt)
    if len(salt) != SALT_BYTES:
        raise ValueError(f"salt is {len(salt)} bytes, not {SALT_BYTES}")
    return (h("metadata_v2", salt + bytes.fromhex(metadata)),
            h("payload_v2", salt + bytes.fromhex(payload)))


def check(records: list) -> list:
    """Return [(sequence, [problems])] for every record, chaining in order."""
    results, chain = [], CHAIN_0
    for i, r in enumerate(records):
        seq, problems = r.get("sequence"), []
        try:
            if seq != i + 1:
                problems.append(f"sequence {seq} is not {i + 1} (sequences start at 1, no gaps)")
            fmt = r.get("format", 1)  # version 1 files have no per-record format
            if fmt not in (1, 2):
                raise ValueError(f"unknown record format {fmt!r}")
            header = header_bytes(r, fmt)
            if header.hex() != r["header_hex"]:
                problems.append(f"header_hex: computed {header.hex()}")
            mh, ph = content_hashes(r, fmt)
            leaf = h("leaf", header + mh + ph)
            chain = h("chain", chain + leaf)
            for name, got in [("metadata_hash", mh), ("payload_hash", ph),
                              ("leaf_hash", leaf), ("chain_hash", chain)]:
                if got.hex() != r[name]:
                    problems.append(f"{name}: computed {got.hex()}, expected {r[name]}")
        except (KeyError, TypeError, ValueError, struct.error) as e:
            problems.append(f"cannot evaluate record: {type(e).__name__}: {e}")
            chain = b"\xff" * 32  # the chain cannot continue past a broken record
        results.append((seq, problems))
    return results


def flipped(records: list, index: int, field: str, at: int = 0) -> list:
    """A copy of the records with one bit of a hex field of one record flipped."""
    tampered = copy.deepcopy(records)
    data = bytearray.fromhex(tampered[index][field])
    data[at] ^= 0x01
    tampered[index][field] = data.hex()
    return tampered


def self_tests(records: list) -> bool:
    """Sensitivity: a flipped payload byte of a record of each format, a
    flipped salt byte, and a flipped stored hash of an erased record must
    each be caught at that record."""
    cases = []
    for fmt in sorted({r.get("format", 1) for r in records}):
        target = next((i for i, r in enumerate(records)
                       if r.get("format", 1) == fmt and r.get("payload_hex")), None)
        cases.append((f"payload byte of a version {fmt} record", target, "payload_hex"))
        if fmt == 2:
            target = next((i for i, r in enumerate(records) if r.get("salt_hex")), None)
            cases.append(("salt byte", target, "salt_hex"))
            target = next((i for i, r in enumerate(records)
                           if r.get("format") == 2 and r.get("payload_hex") is None), None)
            cases.append(("stored payload hash of an erased record", target, "payload_hash"))
    ok = True
    for what, target, field in cases:
        if target is None:
            print(f"self-test: FAIL (no record to flip a {what} of)")
            ok = False
            continue
        caught = bool(check(flipped(records, target, field))[target][1])
        print(f"self-test: flipped {what} ({target + 1}) {'caught' if caught else 'NOT caught'}")
        ok = ok and caught
    return ok


def verify_file(path: Path) -> bool:
    """Checks one vectors file; prints what it finds and returns whether all holds."""
    print(f"== {path.name}")
    doc = json.loads(path.read_text(encoding="utf-8"))
    ok = True
    expected = CONTEXTS_V2 if doc.get("format") == "ledger record v2" else CONTEXTS
    if doc.get("contexts") != expected:
        print(f"FAIL: file contexts {doc.get('contexts')!r} differ from ARCHITECTURE.md")
        ok = False
    if doc.get("chain_genesis") != CHAIN_0.hex():
        print(f"FAIL: file chain_genesis {doc.get('chain_genesis')!r} is not 32 zero bytes")
        ok = False
    records = doc.get("records", [])
    results = check(records)
    for seq, problems in results:
        print(f"sequence {seq}: {'OK' if not problems else 'FAIL'}")
        for p in problems:
            print(f"    {p}")
    failed = sum(1 for _, p in results if p)
    passed = len(results) - failed

    ok = self_tests(records) and ok
    print(f"{path.name}: {passed} passed, {failed} failed")
    return ok and failed == 0 and passed > 0


def main() -> int:
    paths = [Path(arg) for arg in sys.argv[1:]] or DEFAULT
    results = [verify_file(path) for path in paths]
    print(f"verify_vectors: {sum(results)} of {len(results)} files hold")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
