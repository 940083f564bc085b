"""Independent check of the ledger record format v1 test vectors.

Written from ARCHITECTURE.md ("The record format (version 1)") alone, without
reading the Rust implementation: it rebuilds each record's canonical header
bytes from the individual JSON fields and recomputes the metadata, payload,
leaf and chain hashes (BLAKE3 derive_key mode), then compares them with the
expected values in domain/tests/vectors/records-v1.json and in
domain/tests/vectors/events-v1.json (one record of every stored event type
and schema version, chained the same way; "Stored events").

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
CHAIN_0 = bytes(32)
VECTORS = Path(__file__).resolve().parent.parent / "domain/tests/vectors"
DEFAULT = [VECTORS / "records-v1.json", VECTORS / "events-v1.json"]


def h(kind: str, data: bytes) -> bytes:
    return blake3.blake3(data, derive_key_context=CONTEXTS[kind]).digest()


def string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<I", len(b)) + b


def header_bytes(r: dict) -> bytes:
    u = uuid.UUID(r["event_id"])
    if str(u) != r["event_id"]:
        raise ValueError(f"event_id not in canonical text form: {r['event_id']!r}")
    key = r["idempotency_key"]
    return b"".join([
        b"\x01",                                   # 1 format version
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


def check(records: list) -> list:
    """Return [(sequence, [problems])] for every record, chaining in order."""
    results, chain = [], CHAIN_0
    for i, r in enumerate(records):
        seq, problems = r.get("sequence"), []
        try:
            if seq != i + 1:
                problems.append(f"sequence {seq} is not {i + 1} (sequences start at 1, no gaps)")
            header = header_bytes(r)
            if header.hex() != r["header_hex"]:
                problems.append(f"header_hex: computed {header.hex()}")
            mh = h("metadata", bytes.fromhex(r["metadata_hex"]))
            ph = h("payload", bytes.fromhex(r["payload_hex"]))
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


def verify_file(path: Path) -> bool:
    """Checks one vectors file; prints what it finds and returns whether all holds."""
    print(f"== {path.name}")
    doc = json.loads(path.read_text(encoding="utf-8"))
    ok = True
    if doc.get("contexts") != CONTEXTS:
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

    # Sensitivity self-test: one flipped payload byte must be caught.
    target = next((i for i, r in enumerate(records) if r.get("payload_hex")), None)
    if target is None:
        print("self-test: FAIL (no record with a non-empty payload to tamper with)")
        ok = False
    else:
        tampered = copy.deepcopy(records)
        payload = bytearray.fromhex(tampered[target]["payload_hex"])
        payload[0] ^= 0x01
        tampered[target]["payload_hex"] = payload.hex()
        caught = bool(check(tampered)[target][1])
        print(f"self-test: flipped payload byte of record {target + 1} "
              f"{'caught' if caught else 'NOT caught'}")
        ok = ok and caught

    print(f"{path.name}: {passed} passed, {failed} failed")
    return ok and failed == 0 and passed > 0


def main() -> int:
    paths = [Path(arg) for arg in sys.argv[1:]] or DEFAULT
    results = [verify_file(path) for path in paths]
    print(f"verify_vectors: {sum(results)} of {len(results)} files hold")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
