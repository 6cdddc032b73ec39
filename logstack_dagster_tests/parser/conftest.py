"""Shared inputs of the parser tests: the corpus of hard lines and the real logs.

Both live in the shared folder beside the repository (`../shared` from the repo root) and
are read in place, never copied: the logs hold real visitors' addresses.
"""

import base64
import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT.parent / "shared"
CORPUS = SHARED / "corpus" / "cases.jsonl"
DATA = SHARED / "data"


def read_records(path: Path) -> list[bytes]:
    """A log file's records as the broker would carry them: split at LF, endings kept."""
    records = path.read_bytes().splitlines(keepends=True)
    return records


def corpus_cases() -> list[dict]:
    if not CORPUS.exists():
        return []
    cases = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    for case in cases:
        raw = base64.b64decode(case["line_b64"]) if "line_b64" in case else case["line"].encode()
        case["raw"] = raw
    return cases


needs_corpus = pytest.mark.skipif(not CORPUS.exists(), reason=f"shared corpus missing: {CORPUS}")
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"shared logs missing: {DATA}")
