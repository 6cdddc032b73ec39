"""Kill the dataflow at random moments and prove, by counting, that nothing is lost or doubled.

    python bench/chaos.py [--lines 1000000] [--partitions 4] [--kills 10] [--workers 2]

Generates a sample log, produces it into a fresh topic on its own embedded broker, then
starts `logstack flow` and SIGKILLs it at random moments, restarting it each time, and
finally lets it finish. At the end every (topic, partition, offset) must be in the lake or
the quarantine exactly once, every offset of the topic must be there, and the hourly
metrics built from the lake must add up to the line count. Prints a JSON verdict and
exits 1 when any count is off.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

from logstack_dagster.ingest import broker, topic
from logstack_dagster.lake.layout import Lake
from logstack_dagster.sample.generate import write_log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="logstack-chaos-") as scratch:
        verdict = run(Path(scratch), args.lines, args.partitions, args.kills, args.workers,
                      args.seed)
    print(json.dumps(verdict, indent=2))
    return 0 if verdict["ok"] else 1


def run(scratch: Path, lines: int, partitions: int, kills: int, workers: int,
        seed: int) -> dict:
    """Run the whole experiment under `scratch` and return its counts and verdict."""
    rng = random.Random(seed)
    log = scratch / "sample.log"
    write_log(log, lines, seed=seed)
    state = broker.start(scratch / "broker")
    try:
        cluster = topic.Cluster(state.address, {})
        topic.ensure_topic(cluster, "chaos", partitions)
        produced = topic.produce_file(cluster, "chaos", log, partitions)
        env = {**os.environ, "LOGSTACK_HOME": str(scratch / "home"),
               "KAFKA_BROKERS": state.address, "KAFKA_TOPIC": "chaos"}
        killed = kill_repeatedly(env, workers, kills, rng)
        final = subprocess.run(_flow_command(workers), env=env, capture_output=True,
                               text=True, timeout=3600)
        if final.returncode != 0:
            raise SystemExit(f"the final dataflow run failed:\n{final.stderr[-2000:]}")
        ends = topic.exact_end_offsets(cluster, "chaos")
    finally:
        broker.stop(scratch / "broker")

    counts = count_lake(Lake.open(str(scratch / "home" / "lake")))
    metrics_total = metric_total(scratch / "home")
    ok = (counts["records"] == counts["distinct"] == produced == sum(ends.values())
          and counts["missing"] == 0 and metrics_total == produced)
    return {"ok": ok, "produced": produced, "kills": killed, **counts,
            "metrics_total": metrics_total, "partition_ends": ends}


def kill_repeatedly(env: dict, workers: int, kills: int, rng: random.Random) -> list[float]:
    """Start the dataflow and SIGKILL it after a random delay, `kills` times."""
    delays = []
    for _ in range(kills):
        process = subprocess.Popen(_flow_command(workers), env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = rng.uniform(1.0, 6.0)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            delays.append(round(delay, 2))
    return delays


def _flow_command(workers: int) -> list[str]:
    return [sys.executable, "-m", "logstack_dagster.streaming.run", "--workers", str(workers)]


def count_lake(lake: Lake) -> dict[str, int]:
    """Records in the lake, distinct coordinates, and offsets missing below each end."""
    conn = duckdb.connect()
    both = (f"SELECT \"partition\", \"offset\" FROM read_parquet('{lake.glob('requests')}') "
            f"UNION ALL SELECT \"partition\", \"offset\" FROM "
            f"read_parquet('{lake.glob('quarantine')}')")
    records, distinct, missing = conn.execute(f"""
        WITH everything AS ({both}),
             spans AS (SELECT "partition", max("offset") + 1 AS ends FROM everything GROUP BY 1)
        SELECT (SELECT count(*) FROM everything),
               (SELECT count(*) FROM (SELECT DISTINCT "partition", "offset" FROM everything)),
               (SELECT sum(ends) FROM spans)
                 - (SELECT count(*) FROM (SELECT DISTINCT "partition", "offset" FROM everything))
    """).fetchone()
    return {"records": records, "distinct": distinct, "missing": int(missing)}


def metric_total(home: Path) -> int:
    """Lines counted by the hourly traffic metric (requests plus quarantined), every hour."""
    from logstack_dagster.lake.manifest import Manifest
    from logstack_dagster.materialize import lake_hours
    from logstack_dagster.metrics.tables import TRAFFIC, build_hour

    lake = Lake.open(str(home / "lake"))
    cluster = next(iter(lake.list_dirs(lake.path("_manifest")))).rsplit("/", 1)[1]
    hours = lake_hours(list(Manifest(lake, cluster, "chaos").commits()))
    conn = duckdb.connect(str(home / "metrics.duckdb"))
    for hour in hours:
        build_hour(conn, lake, TRAFFIC, hour)
    total = conn.execute(f"SELECT sum(requests + quarantined) FROM {TRAFFIC.name}").fetchone()
    conn.close()
    return int(total[0] or 0)


if __name__ == "__main__":
    sys.exit(main())
