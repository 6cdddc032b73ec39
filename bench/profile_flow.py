"""Where `logstack flow` spends its time: py-spy samples grouped into pipeline stages.

    python bench/profile_flow.py [--size 1m] [--rate 250] [--workers 1] [--processes 1]

Produces the generated log of `--size` (see `run.py`) into a fresh 2-partition topic on
an embedded broker of its own, runs `logstack flow` under `py-spy record --native`, and
sorts every sample into one stage by the deepest frame that names one: parsing, GeoIP,
user agents, Parquet encoding, lake writes, Kafka consumption, Bytewax itself, Python's
garbage collector. Writes `bench/results/profile-<size>.md` and `.json`, and keeps the
raw samples beside them (`profile-<size>.txt`, for flame-graph tools). With `--processes`
above 1 py-spy follows the members too, and the samples of all processes are added up.
The broker watchdog's and the progress log's threads, asleep but sampled, are left out.

py-spy is not a logstack dependency: `pip install py-spy` into the same environment.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

from run import (
    RESULTS_DIR, SIZES, Session, _logstack, count_lines, generated_logs, lake_check,
    measure,
)

# (stage, markers): a frame belongs to the first stage one of whose markers it contains.
# A sample goes to the stage of its deepest frame that belongs to any.
STAGES = (
    ("parse: bytes to text", ("parser/lines.py",)),
    ("parse: derive columns (time, path, flags)", ("parser/derive.py", "parser/timefields.py")),
    ("parse: split fields (regex)", ("parser/textparse.py", "parser/fastpath.py",
                                     "parser/lenient.py", "parser/patterns.py")),
    ("parse: detect, check, sort", ("parser/",)),
    ("enrich: GeoIP", ("enrichment/geoip.py", "maxminddb", "geoip2")),
    ("enrich: user agent", ("enrichment/useragent", "ua_parser")),
    ("enrich: referrer", ("enrichment/referrer",)),
    ("enrich: other", ("enrichment/",)),
    ("sink: Parquet encode + zstd", ("parquet_bytes", "parquet::", "ZSTD_")),
    ("sink: files and manifest", ("lake/layout.py", "lake/manifest.py")),
    ("sink: buffer, concat, split by hour", ("streaming/sink.py", "streaming/batch.py")),
    ("dataflow glue: group, source columns, quarantine", ("streaming/dataflow.py",)),
    ("Kafka consumption (librdkafka, message objects)", ("connectors/kafka", "cimpl", "rd_kafka",
                                                         "streaming/source.py")),
    ("Bytewax: snapshots and recovery store", ("bytewax::recovery", "rusqlite", "sqlite3")),
    ("start-up: imports, topic metadata, summary", ("_find_and_load", "streaming/run.py",
                                                    "ingest/topic.py", "cli.py")),
    ("Bytewax and timely scheduling", ("bytewax", "timely")),
)
GC = "Python garbage collector (during any stage)"


def main() -> int:
    args = _arguments()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is missing: pip install py-spy (into this environment)", file=sys.stderr)
        return 2

    log = generated_logs([args.size])[0][0]
    lines = count_lines(log)
    raw = RESULTS_DIR / f"profile-{args.size}.txt"
    with Session(shutil.which("goaccess") or "") as session:
        home, topic = session.new_run("profile")
        env = session.env(home, topic)
        out = session.folder / "profile.out"
        measure(session, [_logstack(), "produce", str(log)], env, out)
        follow = ["--subprocesses"] if args.processes > 1 else []
        sample = measure(session, [spy, "record", "--native", "--rate", str(args.rate),
                                   *follow, "--format", "raw", "--output", str(raw), "--",
                                   _logstack(), "flow", "-w", str(args.workers),
                                   "-p", str(args.processes)], env, out)
        check = lake_check(home / "lake")
        session.drop(home, topic)

    counts = classify(raw)
    total = sum(counts.values())
    report = {"file": log.name, "lines": lines, "workers": args.workers,
              "processes": args.processes, "rate": args.rate,
              "wall_s_under_py_spy": sample.wall_s, "cpu_s_under_py_spy": sample.cpu_s,
              "samples": total, "lake": check,
              "stages": {stage: {"samples": n, "share": round(n / total, 4)}
                         for stage, n in counts.most_common()}}
    (RESULTS_DIR / f"profile-{args.size}.json").write_text(json.dumps(report, indent=1) + "\n")
    markdown = render(report)
    (RESULTS_DIR / f"profile-{args.size}.md").write_text(markdown)
    print(markdown)
    return 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1m", choices=SIZES)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--processes", type=int, default=1)
    return parser.parse_args()


def classify(raw: Path) -> Counter:
    """Samples per stage from py-spy's raw output (`frame;frame;... count` per line)."""
    counts: Counter = Counter()
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if "_watch_broker" in stack or "_log_progress" in stack:
            continue
        frames = stack.split(";")
        counts[stage_of(frames)] += int(number)
    return counts


def stage_of(frames: list[str]) -> str:
    if any("gc_collect" in frame for frame in frames):
        return GC
    for frame in reversed(frames):
        for stage, markers in STAGES:
            if any(marker in frame for marker in markers):
                return stage
    return "other (native frames without a known caller)"


def render(report: dict) -> str:
    lines = [
        f"# Where `logstack flow` spends its time ({report['file']})",
        "",
        f"{report['lines']:,} lines, {report.get('processes', 1)} process(es) of "
        f"{report['workers']} worker(s), py-spy at "
        f"{report['rate']} samples/s with native frames: {report['samples']:,} samples. "
        f"Under the profiler the run took {report['wall_s_under_py_spy']:.1f} s wall, "
        f"{report['cpu_s_under_py_spy']:.1f} s CPU. Shares are of the sampled Python "
        "threads; librdkafka's own threads are not sampled.",
        "",
        "| stage | share | thread-seconds sampled |",
        "|---|--:|--:|",
    ]
    for stage, entry in report["stages"].items():
        seconds = entry["samples"] / report["rate"]
        lines.append(f"| {stage} | {entry['share']:.1%} | {seconds:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
