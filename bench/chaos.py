"""Kill the dataflow at random moments and prove, by counting, that nothing is lost or doubled.

    python bench/chaos.py [--lines 1000000] [--partitions 4] [--kills 10] [--workers 2]
                          [--processes 1]

Generates a sample log, produces it into a fresh topic on its own embedded broker, then
starts `logstack flow` and SIGKILLs it at random moments, restarting it each time, and
finally lets it finish. At the end every (topic, partition, offset) must be in the lake or
the quarantine exactly once, every offset of the topic must be there, the hourly metrics
built from the lake must add up to the line count, and the final run must have needed
one attempt (a cluster restarts itself on a broken link between its processes). Prints a
JSON verdict and exits 1 when any of it is off.

With `--processes 2` the dataflow runs as a cluster of processes; each kill then SIGKILLs
either the whole process group (launcher and members at once, like a lost machine) or one
member alone (the launcher must stop the others and fail), taking turns.
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
import time
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
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="logstack-chaos-") as scratch:
        verdict = run(Path(scratch), args.lines, args.partitions, args.kills, args.workers,
                      args.seed, args.processes)
    print(json.dumps(verdict, indent=2))
    return 0 if verdict["ok"] else 1


def run(scratch: Path, lines: int, partitions: int, kills: int, workers: int,
        seed: int, processes: int = 1) -> dict:
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
        killed = kill_repeatedly(env, workers, kills, rng, processes)
        final = subprocess.run(_flow_command(workers, processes), env=env, capture_output=True,
                               text=True, timeout=3600)
        if final.returncode != 0:
            raise SystemExit(f"the final dataflow run failed:\n{final.stderr[-8000:]}")
        # A cluster run that only succeeded after restarting itself would hide a fault.
        attempts = json.loads(final.stdout.splitlines()[-1])["attempts"]
        ends = topic.exact_end_offsets(cluster, "chaos")
    finally:
        broker.stop(scratch / "broker")

    counts = count_lake(Lake.open(str(scratch / "home" / "lake")))
    metrics_total = metric_total(scratch / "home")
    ok = (counts["records"] == counts["distinct"] == produced == sum(ends.values())
          and counts["missing"] == 0 and metrics_total == produced and attempts == 1)
    verdict = {"ok": ok, "processes": processes, "workers": workers, "produced": produced,
               "kills": killed, "final_attempts": attempts, **counts,
               "metrics_total": metrics_total, "partition_ends": ends}
    if kills and not killed:
        # Counting right after runs that were never killed proves nothing about crashes.
        verdict.update(ok=False, problem="the first run finished before its kill; "
                                         "give more --lines")
    return verdict


def kill_repeatedly(env: dict, workers: int, kills: int, rng: random.Random,
                    processes: int = 1) -> list[dict]:
    """Start the dataflow and SIGKILL it after a random delay, `kills` times."""
    done = []
    for number in range(kills):
        process = subprocess.Popen(_flow_command(workers, processes), env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        delay = rng.uniform(1.0, 6.0)
        try:
            process.wait(timeout=delay)
            continue
        except subprocess.TimeoutExpired:
            pass
        members = children(process.pid)
        if processes > 1 and number % 2 == 1 and members:
            target = rng.choice(members)
            os.kill(target, signal.SIGKILL)
            what = "one member"
        else:
            os.killpg(process.pid, signal.SIGKILL)
            what = "all"
        process.wait()
        wait_gone(members)
        done.append({"after_s": round(delay, 2), "killed": what})
    return done


def children(pid: int) -> list[int]:
    """The child processes of `pid` (the members of a cluster run), from /proc."""
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def wait_gone(pids: list[int], timeout: float = 30.0) -> None:
    """Wait until none of `pids` runs any more, so that the next run finds the topic free."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)


def _flow_command(workers: int, processes: int = 1) -> list[str]:
    return [sys.executable, "-m", "logstack_dagster.streaming.run", "--workers", str(workers),
            "--processes", str(processes)]


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
