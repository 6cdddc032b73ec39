"""Parser throughput on one core: real combined lines repeated in memory, lines/s as JSON.

Run from the repository root: `python bench/parser_bench.py [--lines N] [--format F]`.
The log is read in place from the shared folder beside the repository and never copied.
"""

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from logstack_dagster.parser import parse_lines  # noqa: E402

DEFAULT_LOG = REPO_ROOT.parent / "shared" / "data" / "elastic-apache-2015.log"


def main() -> None:
    args = _arguments()
    records = args.log.read_bytes().splitlines(keepends=True)
    batch = (records * (args.lines // len(records) + 1))[: args.lines]

    parse_lines(batch[:1000], args.format)  # compile patterns outside the timing
    timings = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        result = parse_lines(batch, args.format)
        timings.append(time.perf_counter() - start)

    best = min(timings)
    print(json.dumps({
        "log": args.log.name, "format": args.format, "lines": len(batch),
        "accepted": result.accepted, "rejected": result.rejected,
        "best_seconds": round(best, 4), "lines_per_second": round(len(batch) / best),
    }))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--format", default="combined")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG)
    return parser.parse_args()


if __name__ == "__main__":
    main()
