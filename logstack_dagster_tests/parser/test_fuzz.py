"""Fuzzing: 100,000 random and mutated lines through the dataflow's batch processing.

The lines are the real logs and the corpus of lines that broke other parsers, changed by a
seeded mutator (bytes flipped, cut, spliced, NUL and invalid UTF-8 put in, a 1 MiB line),
plus pure noise. They go through `BatchProcessor`, the parse-and-enrich step of the
dataflow, in batches of 10,000 over four partitions as the topic would deliver them. Every
record must come out once, as a lake row or as a quarantined line with a reason, and the
counts must add up. The seed is fixed, so a failure reproduces.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable

import pyarrow.parquet as pq
import pytest

from logstack_dagster.enrichment.pipeline import RowEnricher
from logstack_dagster.lake.schema import rows_schema
from logstack_dagster.parser import parse_lines
from logstack_dagster.streaming.batch import QUARANTINE_SCHEMA, RawBatch
from logstack_dagster.streaming.dataflow import BatchProcessor
from logstack_dagster_tests.parser.conftest import DATA, corpus_cases, needs_corpus, needs_data

TOTAL = 100_000
BATCH = 10_000
PARTITIONS = 4
SEED = 20_240_607
_REASON = re.compile(r"[a-z][a-z_]*")

_INVALID_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28", b"\x80\x80",
                 b"\xe2\x82")
_AWKWARD = (b"\x00", b"\r", b"\n", b"\t", b'"', b"\\", b"[", b"]", b" ", b"-", b"%",
            "\u202e".encode(), "\U0001f600".encode(), b"\x1b[31m")


def _flip(rng: random.Random, line: bytes) -> bytes:
    if not line:
        return bytes([rng.randrange(256)])
    at = rng.randrange(len(line))
    return line[:at] + bytes([rng.randrange(256)]) + line[at + 1:]


def _insert(rng: random.Random, line: bytes) -> bytes:
    at = rng.randrange(len(line) + 1)
    piece = rng.choice([rng.randbytes(rng.randint(1, 16)), rng.choice(_INVALID_UTF8),
                        rng.choice(_AWKWARD)])
    return line[:at] + piece + line[at:]


def _cut(rng: random.Random, line: bytes) -> bytes:
    if len(line) < 2:
        return b""
    start = rng.randrange(len(line))
    return line[:start] + line[start + rng.randint(1, 40):]


def _truncate(rng: random.Random, line: bytes) -> bytes:
    return line[:rng.randrange(len(line) + 1)]


def _digits(rng: random.Random, line: bytes) -> bytes:
    """Change digits, which land in timestamps, status codes, sizes and addresses."""
    return bytes(rng.choice(b"0123456789") if c in b"0123456789" and rng.random() < 0.2 else c
                 for c in line)


def _fields(rng: random.Random, line: bytes) -> bytes:
    """Drop, repeat or swap space-separated fields."""
    parts = line.split(b" ")
    if len(parts) < 2:
        return line + b" " + line
    i, j = rng.randrange(len(parts)), rng.randrange(len(parts))
    choice = rng.randrange(3)
    if choice == 0:
        del parts[i]
    elif choice == 1:
        parts.insert(i, parts[j])
    else:
        parts[i], parts[j] = parts[j], parts[i]
    return b" ".join(parts)


def _case(rng: random.Random, line: bytes) -> bytes:
    return line.swapcase() if rng.random() < 0.5 else line.upper()


MUTATORS: tuple[Callable[[random.Random, bytes], bytes], ...] = (
    _flip, _insert, _cut, _truncate, _digits, _fields, _case)


class Fuzzer:
    """Makes the records: real lines, mutated lines, splices and noise, from one seed."""

    def __init__(self, seed: int, sources: list[list[bytes]], corpus: list[bytes]):
        self.rng = random.Random(seed)
        self.sources = sources
        self.corpus = corpus

    def record(self, partition: int) -> bytes:
        rng = self.rng
        own = self.sources[partition % len(self.sources)]
        roll = rng.random()
        if roll < 0.2:
            return rng.choice(own)
        if roll < 0.3:
            return rng.choice(self.corpus)
        if roll < 0.38:
            return self._noise()
        if roll < 0.43:
            other = rng.choice(self.sources)
            first, second = rng.choice(own), rng.choice(other)
            return first[:rng.randrange(len(first) + 1)] + second[rng.randrange(len(second) + 1):]
        line = rng.choice(own) if roll < 0.9 else rng.choice(self.corpus)
        for _ in range(rng.randint(1, 3)):
            line = rng.choice(MUTATORS)(rng, line)
        return line

    def _noise(self) -> bytes:
        rng = self.rng
        kind = rng.randrange(4)
        if kind == 0:
            return rng.randbytes(rng.randint(0, 300))
        if kind == 1:
            return rng.choice([b"", b" ", b"\t", b"-", b'""', b"\x00" * rng.randint(1, 8)])
        if kind == 2:
            text = "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0x80, 0xD7FF)]))
                           for _ in range(rng.randint(1, 120)))
            return text.encode()
        # TLS handshakes and other protocols sent to an HTTP port.
        return rng.choice([b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                           b"SSH-2.0-OpenSSH_8.9", b"PRI * HTTP/2.0"]) + rng.randbytes(8)


def _records() -> list[tuple[int, bytes]]:
    """(partition, value) of every record, in topic order per partition."""
    logs = sorted(p for p in DATA.glob("*.log") if p.stat().st_size > 10_000)
    sources = [[line for line in p.read_bytes().split(b"\n") if line] for p in logs]
    corpus = [case["raw"].rstrip(b"\r\n") for case in corpus_cases()]
    fuzzer = Fuzzer(SEED, sources, corpus)

    records = [(n % PARTITIONS, fuzzer.record(n % PARTITIONS)) for n in range(TOTAL)]
    # Lines far over the parser's length limit, one of them 1 MiB.
    for n, size in ((5, 1 << 20), (TOTAL // 2 + 1, 70_000)):
        partition, value = records[n]
        records[n] = (partition, (value + b" ") * (size // (len(value) + 1) + 1))
    return records


@pytest.fixture(scope="module")
def outcome():
    """Process the records as the dataflow does; keep what came out and what went in."""
    processor = BatchProcessor(None, RowEnricher())
    records = _records()
    sent: dict[tuple[int, int], bytes] = {}
    batches = []
    for partition in range(PARTITIONS):
        values = [value for p, value in records if p == partition]
        for start in range(0, len(values), BATCH):
            chunk = values[start:start + BATCH]
            offsets = list(range(start, start + len(chunk)))
            sent.update(((partition, o), v) for o, v in zip(offsets, chunk))
            raw = RawBatch("fuzz", partition, offsets, [1_700_000_000_000] * len(chunk), chunk)
            batches.append((raw, processor(raw)))
    return processor, sent, batches


@needs_data
@needs_corpus
def test_every_record_is_a_row_or_a_quarantined_line_exactly_once(outcome):
    _processor, sent, batches = outcome

    seen: Counter[tuple[int, int]] = Counter()
    rows = quarantined = 0
    for raw, out in batches:
        row_offsets = out.rows.column("offset").to_pylist()
        held_offsets = out.quarantine.column("offset").to_pylist()
        assert sorted(row_offsets + held_offsets) == raw.offsets
        seen.update((raw.partition, o) for o in row_offsets + held_offsets)
        rows += out.rows.num_rows
        quarantined += out.quarantine.num_rows

    assert len(sent) == TOTAL
    assert rows + quarantined == TOTAL
    assert set(seen) == set(sent) and max(seen.values()) == 1
    # The mutations must really produce both outcomes in numbers, or the test proves little.
    assert rows > TOTAL * 0.3 and quarantined > TOTAL * 0.1


@needs_data
@needs_corpus
def test_each_quarantined_line_keeps_its_bytes_and_a_reason(outcome):
    _processor, sent, batches = outcome

    reasons: Counter[str] = Counter()
    for raw, out in batches:
        held = out.quarantine
        assert held.schema.equals(QUARANTINE_SCHEMA)
        for row in held.select(["offset", "reason", "message", "raw", "raw_text"]).to_pylist():
            assert _REASON.fullmatch(row["reason"]), row
            assert row["message"].strip(), row
            assert row["raw"] == sent[(raw.partition, row["offset"])]
            assert row["raw_text"] == row["raw"].decode("utf-8", "backslashreplace")
            reasons[row["reason"]] += 1

    assert sum(reasons.values()) == sum(out.quarantine.num_rows for _, out in batches)
    assert reasons["too_long"] >= 2
    assert reasons["empty"] > 0 and reasons["no_match"] > 0


@needs_data
@needs_corpus
def test_rows_fit_the_lake_and_write_as_parquet(outcome, tmp_path):
    _processor, _sent, batches = outcome
    wanted = rows_schema()

    for number, (_raw, out) in enumerate(batches):
        assert out.rows.schema.names == wanted.names
        assert out.rows.column("event_time").null_count == 0
        pq.write_table(out.rows, tmp_path / f"rows-{number}.parquet")
        pq.write_table(out.quarantine, tmp_path / f"quarantine-{number}.parquet")

    read = pq.read_table(tmp_path / "rows-0.parquet")
    assert read.num_rows == batches[0][1].rows.num_rows


@needs_data
@needs_corpus
def test_a_line_fares_the_same_alone_as_in_its_batch(outcome):
    """The batch API and a batch of one agree, for a sample of the records."""
    processor, sent, batches = outcome
    rng = random.Random(SEED + 1)

    for raw, out in rng.sample(batches, 4):
        fmt = processor.detected[raw.partition]
        kept = set(out.rows.column("offset").to_pylist())
        reason = dict(zip(out.quarantine.column("offset").to_pylist(),
                          out.quarantine.column("reason").to_pylist()))
        for offset in rng.sample(raw.offsets, 250):
            alone = parse_lines([sent[(raw.partition, offset)]], fmt)
            if offset in kept:
                assert alone.rows.num_rows == 1, (offset, alone.rejects.to_pylist())
            else:
                assert alone.rejects.column("reason").to_pylist() == [reason[offset]]


def test_the_mutator_is_deterministic_and_really_mutates():
    line = b'127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326'
    first, again = Fuzzer(7, [[line]], [line]), Fuzzer(7, [[line]], [line])
    made = [first.record(0) for _ in range(500)]

    assert made == [again.record(0) for _ in range(500)]
    assert 50 < sum(record != line for record in made) < 500
