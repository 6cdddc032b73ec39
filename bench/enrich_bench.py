"""What enrichment costs the dataflow: GeoIP, user agents and referrers on a large log.

Issue #5 allows the enrichment at most a quarter of the dataflow's throughput on a log of
1,000,000 lines with 20,000 distinct client addresses and 2,000 distinct user agents. This
script makes such a log (seeded, in memory), then runs the dataflow's own batch step,
`BatchProcessor`, over it in batches of 10,000 as the topic delivers them, with and without
a `RowEnricher`, and writes each batch's rows and quarantine as Parquet as the sink does.
The broker is left out: it costs the same with or without enrichment, so leaving it out
makes the enrichment's share look larger, never smaller.

    .venv/bin/python bench/enrich_bench.py                 # 1M lines, 3 runs, ~3 min
    .venv/bin/python bench/enrich_bench.py --lines 200000 --repeat 1

Writes `bench/results/enrich.json` and `enrich.md` (or `--label NAME`).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from logstack_dagster.enrichment.pipeline import RowEnricher
from logstack_dagster.parser import parse_lines
from logstack_dagster.sample.generate import generate_lines
from logstack_dagster.streaming.batch import RawBatch
from logstack_dagster.streaming.dataflow import BatchProcessor

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 10_000
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_VERSION = re.compile(rb"(Chrome|Firefox|Version|Edg|OPR|CriOS|SamsungBrowser)/(\d+)\.(\d+)")


def make_log(lines: int, addresses: int, agents: int, seed: int) -> list[bytes]:
    """`lines` combined-format lines over exactly `addresses` public IPv4 clients and about
    `agents` user agents, both drawn with a long tail as real traffic is."""
    rng = random.Random(seed)
    base = list(generate_lines(min(lines, 50_000), seed=seed))
    requests, referrers, real_agents = [], [], []
    for line in base:
        parts = line.split(b'"')
        if len(parts) >= 7:
            # The request, status and size, up to the referrer's opening quote.
            requests.append(parts[1] + b'"' + parts[2] + b'"')
            referrers.append(parts[3])
            real_agents.append(parts[5])

    ips = _public_addresses(rng, addresses)
    pool = list(dict.fromkeys(real_agents))
    while len(pool) < agents:
        # A real agent with another browser version: a distinct agent a parser must read.
        agent = rng.choice(real_agents)
        pool.append(_VERSION.sub(lambda m: b"%s/%d.%d" % (m[1], rng.randint(40, 140),
                                                          rng.randint(0, 9)), agent, count=1)
                    + (b"" if _VERSION.search(agent) else b" v%d" % len(pool)))
    pool = list(dict.fromkeys(pool))[:agents]

    ip_weights = [1 / (rank + 1) ** 0.8 for rank in range(len(ips))]
    agent_weights = [1 / (rank + 1) ** 0.9 for rank in range(len(pool))]
    # Every address and agent appears at least once; the rest follow the long tail.
    chosen_ips = ips + rng.choices(ips, ip_weights, k=lines - len(ips))
    chosen_agents = pool + rng.choices(pool, agent_weights, k=lines - len(pool))
    rng.shuffle(chosen_ips)
    rng.shuffle(chosen_agents)

    start = datetime(2024, 3, 1, tzinfo=UTC)
    out = []
    for n in range(lines):
        when = start + timedelta(seconds=n * 86_400 // lines)
        stamp = (f"{when:%d}/{MONTHS[when.month - 1]}/{when:%Y:%H:%M:%S} +0000").encode()
        request = requests[n % len(requests)]
        out.append(b'%s - - [%s] "%s%s" "%s"' % (
            chosen_ips[n].encode(), stamp, request, referrers[n % len(referrers)],
            chosen_agents[n]))
    return out


def _public_addresses(rng: random.Random, count: int) -> list[str]:
    found: dict[str, None] = {}
    while len(found) < count:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if address.is_global and not address.is_multicast:
            found[str(address)] = None
    return list(found)


def run_once(lines: list[bytes], enrich: bool, scratch: Path) -> dict:
    """Process `lines` as the dataflow does; seconds of each step and the counts."""
    enricher = RowEnricher() if enrich else None
    processor = BatchProcessor("combined", enricher)
    parse_enrich = write = 0.0
    rows = quarantined = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for number, first in enumerate(range(0, len(lines), BATCH)):
        values = lines[first:first + BATCH]
        raw = RawBatch("bench", 0, list(range(first, first + len(values))),
                       [0] * len(values), values)
        t0 = time.perf_counter()
        out = processor(raw)
        t1 = time.perf_counter()
        pq.write_table(out.rows, scratch / f"rows-{number}.parquet", compression="zstd")
        pq.write_table(out.quarantine, scratch / f"quarantine-{number}.parquet")
        write += time.perf_counter() - t1
        parse_enrich += t1 - t0
        rows += out.rows.num_rows
        quarantined += out.quarantine.num_rows
    total = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    if enricher is not None:
        enricher.close()
    return {"seconds": total, "cpu_seconds": cpu, "process_seconds": parse_enrich,
            "write_seconds": write,
            "rows": rows, "quarantined": quarantined, "lines_per_second": len(lines) / total}


def measure(lines: list[bytes], repeat: int) -> dict:
    runs: dict[str, list[dict]] = {"without": [], "with": []}
    with tempfile.TemporaryDirectory(prefix="enrich-bench-") as folder:
        for _ in range(repeat):
            # Alternate, so that a noisy neighbour slows both alike.
            for kind in ("without", "with"):
                runs[kind].append(run_once(lines, kind == "with", Path(folder)))
                print(f"  {kind:7} enrichment: {runs[kind][-1]['lines_per_second']:>9,.0f} "
                      "lines/s", file=sys.stderr)

    # CPU seconds decide: on a shared machine wall time swings with the neighbours' load,
    # while the work a run does stays the same.
    median = {kind: statistics.median(r["seconds"] for r in found)
              for kind, found in runs.items()}
    cpu = {kind: statistics.median(r["cpu_seconds"] for r in found)
           for kind, found in runs.items()}
    cost = 1 - cpu["without"] / cpu["with"]
    return {"runs": runs, "median_seconds": median, "median_cpu_seconds": cpu,
            "lines_per_second": {k: len(lines) / v for k, v in median.items()},
            "lines_per_cpu_second": {k: len(lines) / v for k, v in cpu.items()},
            "throughput_lost": cost, "goal": 0.25, "met": cost <= 0.25}


def stage_seconds(lines: list[bytes]) -> dict[str, float]:
    """CPU seconds of each enrichment stage over the whole log, caches cold at the start."""
    parsed = [parse_lines(lines[first:first + BATCH], "combined").rows
              for first in range(0, len(lines), BATCH)]
    enricher = RowEnricher()
    stages = {"geoip": enricher.places.apply, "user_agent": enricher.user_agents.enrich,
              "referrer": enricher.referrers.enrich}
    spent = dict.fromkeys(stages, 0.0)
    for table in parsed:
        for name, stage in stages.items():
            started = time.process_time()
            table = stage(table)
            spent[name] += time.process_time() - started
    enricher.close()
    return spent


def markdown(result: dict) -> str:
    speed, per_cpu = result["lines_per_second"], result["lines_per_cpu_second"]
    seconds, cpu = result["median_seconds"], result["median_cpu_seconds"]
    return "\n".join([
        "# Enrichment cost",
        "",
        f"{result['lines']:,} lines, {result['addresses']:,} distinct addresses, "
        f"{result['agents']:,} distinct user agents; batches of {BATCH:,}; median of "
        f"{result['repeat']} runs; {result['machine']}.",
        "",
        "| dataflow step | wall s | lines/s | CPU s | lines per CPU s |",
        "|---|---:|---:|---:|---:|",
        *(f"| {name} | {seconds[kind]:.2f} | {speed[kind]:,.0f} | {cpu[kind]:.2f} | "
          f"{per_cpu[kind]:,.0f} |"
          for kind, name in (("without", "parse + write Parquet"),
                             ("with", "parse + enrich + write Parquet"))),
        "",
        f"Throughput lost to enrichment (CPU time): **{result['throughput_lost']:.1%}** "
        f"(goal: at most {result['goal']:.0%}; {'met' if result['met'] else 'NOT met'}).",
        "",
        "| enrichment stage | CPU s |",
        "|---|---:|",
        *(f"| {name} | {seconds:.2f} |" for name, seconds in result["stages"].items()),
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--addresses", type=int, default=20_000)
    parser.add_argument("--agents", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default="enrich")
    args = parser.parse_args(argv)
    if min(args.lines, args.addresses, args.agents, args.repeat) < 1:
        parser.error("--lines, --addresses, --agents and --repeat must be at least 1")
    if args.addresses > args.lines or args.agents > args.lines:
        parser.error("--addresses and --agents cannot exceed --lines")

    print(f"making {args.lines:,} lines ...", file=sys.stderr)
    lines = make_log(args.lines, args.addresses, args.agents, args.seed)
    result = measure(lines, args.repeat)
    result["stages"] = stage_seconds(lines)
    result.update(lines=args.lines, addresses=args.addresses, agents=args.agents,
                  repeat=args.repeat, seed=args.seed,
                  machine=f"{platform.machine()}, Python {platform.python_version()}",
                  measured_at=datetime.now(UTC).isoformat(timespec="seconds"))

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.label}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.label}.md").write_text(markdown(result))
    print(markdown(result))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
