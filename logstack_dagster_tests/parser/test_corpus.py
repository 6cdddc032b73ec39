"""Every line of the shared corpus of parser-breaking lines gives its expected values."""

from datetime import datetime

import pytest

from logstack_dagster.parser import parse_lines
from logstack_dagster_tests.parser.conftest import corpus_cases, needs_corpus

# Corpus field names that the product stores under another column name.
COLUMN_OF = {"xff": "forwarded_for"}
CASES = corpus_cases()


def _expected_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@needs_corpus
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_corpus_case(case):
    result = parse_lines([case["raw"]], case["format"])
    expect = dict(case["expect"])
    parse_ok = expect.pop("parse_ok", True)

    if not parse_ok:
        assert result.rejects.num_rows == 1, f"{case['id']} should be quarantined"
        assert result.rejects["line_index"].to_pylist() == [0]
        return
    if case.get("accept_either") and result.rows.num_rows == 0:
        assert result.rejects["reason"].to_pylist()[0] in ("no_match", "truncated")
        return

    assert result.rows.num_rows == 1, result.rejects.to_pylist()
    row = result.rows.to_pylist()[0]
    for field, value in expect.items():
        column = COLUMN_OF.get(field, field)
        if field == "event_time":
            assert row["event_time"] == _expected_time(value), case["id"]
        else:
            assert row[column] == value, f"{case['id']}: {column}={row[column]!r}"


@needs_corpus
def test_corpus_cases_in_one_batch_keep_their_positions():
    cases = [c for c in CASES if c["format"] == "combined"]
    result = parse_lines([c["raw"] + b"\n" for c in cases], "combined")

    kept = result.rows["line_index"].to_pylist()
    rejected = result.rejects["line_index"].to_pylist()
    assert sorted(kept + rejected) == list(range(len(cases)))
    clients = dict(zip(kept, result.rows["client"].to_pylist()))
    for n, case in enumerate(cases):
        if n in clients:
            assert clients[n] == case["expect"]["client"]
