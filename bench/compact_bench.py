"""What compaction does to an hour of small files: files, time, memory, and reading.

A topic followed or read by the ingest sensor leaves one file per commit, partition,
table and hour. This script makes such an hour with the dataflow's own sink (no broker):
`--commits` commits of `--rows` generated lines into each of `--partitions` partitions,
all timed in one hour. It then reads the hour as the hourly metrics do (`hours_source`,
a count and a group-by over the rows), runs one compaction pass, reads again, and
checks that the readers' counts and an order-free hash of every row did not change.

    .venv/bin/python bench/compact_bench.py                  # 4 x 30 commits of 2,000 rows
    .venv/bin/python bench/compact_bench.py --commits 120 --rows 500 --repeat 3

Writes `bench/results/compact.json` and `compact.md` (or `--label NAME`). The medians of
`--repeat` runs, each on a new lake, are reported, with min and max.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from logstack_dagster.lake.compact import compact
from logstack_dagster.lake.duck import complete_files, hours_source
from logstack_dagster.lake.layout import QUARANTINE, ROWS, Lake
from logstack_dagster.lake.manifest import Manifest
from logstack_dagster.lake.reconcile import reconcile
from logstack_dagster.sample.generate import generate_lines
from logstack_dagster.streaming.batch import RawBatch
from logstack_dagster.streaming.dataflow import BatchProcessor
from logstack_dagster.streaming.sink import LakePartition

RESULTS = Path(__file__).resolve().parent / "results"
HOUR = datetime(2019, 12, 2, 10, tzinfo=UTC)


def one_hour_lines(count: int, seed: int) -> list[bytes]:
    """Generated combined lines, every one moved into HOUR (minutes and seconds kept)."""
    lines = []
    for line in generate_lines(count, seed=seed):
        left, bracket, rest = line.partition(b"[")
        lines.append(left + bracket + rest[:12] + b"10" + rest[14:] if bracket else line)
    return lines


def fill(lake: Lake, partitions: int, commits: int, rows: int) -> None:
    """`commits` commits of `rows` records into each partition, one file each per table."""
    manifest = Manifest(lake, "bench-cluster", "bench")
    processor = BatchProcessor("combined", enricher=None)
    lines = one_hour_lines(partitions * commits * rows, seed=5)
    for partition in range(partitions):
        part = LakePartition(manifest, partition, "bench-run", flush_rows=rows,
                             commit_seconds=0)
        for commit in range(commits):
            start = commit * rows
            at = (partition * commits + commit) * rows
            raw = RawBatch("bench", partition, list(range(start, start + rows)),
                           [0] * rows, lines[at:at + rows])
            part.write_batch([processor(raw)])
            part.snapshot()
        part.close()


def read_hour(lake: Lake) -> tuple[float, tuple]:
    """Seconds to read the hour as a metric does, and what it read."""
    started = time.perf_counter()
    conn = duckdb.connect()
    counts = []
    for table in (ROWS, QUARANTINE):
        source = hours_source(lake, table, [HOUR])
        counts.append(conn.execute(f"SELECT count(*), bit_xor(hash(t)) FROM {source} t")
                      .fetchone())
    conn.execute(f"SELECT status_code, count(*) FROM {hours_source(lake, ROWS, [HOUR])} "
                 "GROUP BY 1").fetchall()
    return time.perf_counter() - started, tuple(counts)


def one_run(partitions: int, commits: int, rows: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="logstack-compact-") as folder:
        lake = Lake.open(f"{folder}/lake")
        fill(lake, partitions, commits, rows)
        files_before = len(complete_files(lake, ROWS)) + len(complete_files(lake, QUARANTINE))
        read_before, seen_before = read_hour(lake)

        cpu, wall = time.process_time(), time.perf_counter()
        result = compact(lake, Path(folder) / "home", before=datetime(2100, 1, 1, tzinfo=UTC))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

        files_after = len(complete_files(lake, ROWS)) + len(complete_files(lake, QUARANTINE))
        read_after, seen_after = read_hour(lake)
        return {
            "files_before": files_before, "files_after": files_after,
            "merged_rows": result.rows, "compact_wall_s": round(wall, 3),
            "compact_cpu_s": round(cpu, 3), "read_before_s": round(read_before, 3),
            "read_after_s": round(read_after, 3), "same_rows": seen_before == seen_after,
            "reconciles": reconcile(Manifest(lake, "bench-cluster", "bench")).passed,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--commits", type=int, default=30)
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--label", default="compact")
    args = parser.parse_args()

    runs = [one_run(args.partitions, args.commits, args.rows) for _ in range(args.repeat)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def spread(key: str) -> dict:
        values = [run[key] for run in runs]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    report = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "options": vars(args),
        "runs": runs,
        "compact_wall_s": spread("compact_wall_s"), "compact_cpu_s": spread("compact_cpu_s"),
        "read_before_s": spread("read_before_s"), "read_after_s": spread("read_after_s"),
        "peak_rss_bytes_of_the_script": peak,
        "same_rows_every_run": all(r["same_rows"] and r["reconciles"] for r in runs),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.label}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.label}.md").write_text(render(report))
    print(render(report))
    return 0 if report["same_rows_every_run"] else 1


def render(report: dict) -> str:
    options, first = report["options"], report["runs"][0]

    def cell(key: str) -> str:
        value = report[key]
        return f"{value['median']:.2f} [{value['min']:.2f}-{value['max']:.2f}]"

    return "\n".join([
        "# Compaction of one hour of small files", "",
        f"{options['partitions']} partitions x {options['commits']} commits of "
        f"{options['rows']:,} generated lines, all in one hour, written by the dataflow's "
        f"sink; medians of {options['repeat']} runs [min-max]; {report['started']}, Python "
        f"{report['machine']['python']}.", "",
        "| measure | value |", "|---|--:|",
        f"| files readers see, before | {first['files_before']:,} |",
        f"| files readers see, after | {first['files_after']:,} |",
        f"| rows and lines merged | {first['merged_rows']:,} |",
        f"| compaction wall s | {cell('compact_wall_s')} |",
        f"| compaction CPU s | {cell('compact_cpu_s')} |",
        f"| reading the hour (count, hash, group-by), before, s | {cell('read_before_s')} |",
        f"| the same after, s | {cell('read_after_s')} |",
        f"| peak RSS of the script, MiB | {report['peak_rss_bytes_of_the_script'] / 2**20:,.0f} |",
        f"| same rows and a clean reconciliation in every run | "
        f"{report['same_rows_every_run']} |", ""])


if __name__ == "__main__":
    sys.exit(main())
