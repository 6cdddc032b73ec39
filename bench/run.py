"""Lines per second, CPU and peak memory of every logstack stage, next to GoAccess.

    python bench/run.py [--sizes 100k,1m,10m] [--repeat 3] [--large-repeat N] [--quick]
                        [--skip-real] [--skip-scaling] [--scaling-size 1m]

Each measured file is a generated log of every size asked for (made once by `logstack
generate` and kept under `.logstack/bench/`) and every `*.log` of the shared data folder
beside the repository (read in place). On each file, `--repeat` times over:

    goaccess        GoAccess to a JSON report, the baseline of every ratio
    goaccess_geoip  the same with the GeoLite2-City database logstack uses
    produce         `logstack produce FILE` into a fresh topic of 2 partitions
    flow            `logstack flow`: topic to parsed, enriched, hour-partitioned Parquet
    flow_2p         `logstack flow --processes 2`: the same as two processes of one cluster
    metrics         every hourly metric table of every hour in the lake, via `build_hours`
    produce_then_flow  the two stages above, one after the other (their sums)
    end_to_end      `logstack load FILE`: produce and the dataflow at once, file to
                    queryable Parquet, into a fresh topic and home
    end_to_end_2p   `logstack load FILE --processes 2`

Every stage is its own process; its wall time, CPU time (user + system) and peak RSS
come from `os.wait4` in a small launcher, and the broker's CPU time during the stage
from /proc (for several processes, CPU is their sum and peak RSS the largest one's). A
topic and a LOGSTACK_HOME serve one repeat and are deleted after it. Then `logstack flow`
as 1 or 2 processes of 1 or 2 workers reads one 4-partition topic in turn, each into a
fresh home, and their outputs are compared row by row (by hash); beside them, two
single-worker flows run at once on the log's two halves, each on a topic of its own, which
bounds what two processes can gain on the machine.

Results go to `bench/results/<UTC time>.json`, `latest.json` and `latest.md` (another name
with `--label`); `--quick` (100k only, one repeat, for smoke checks) writes only
`quick.json` and `quick.md`.
Exits 1 when a stage failed or lost lines, 2 when GoAccess is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
CACHE_DIR = REPO_ROOT / ".logstack" / "bench"
BIN = Path(sys.executable).parent

SIZES = {"100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}
SEED = 0
PARTITIONS = 2
SCALING_PARTITIONS = 4
GIB = 1 << 30

# GoAccess needs the format spelled out; logstack detects it. Host names in place of client
# addresses (NASA, TWiki) are rejected by GoAccess unless its address check is off.
GOACCESS_FORMATS = {
    "nasa-jul95-part.log": ["--log-format=COMMON", "--no-ip-validation"],
    "twiki-2004-common-crlf.log": ["--log-format=COMMON", "--no-ip-validation"],
    "vhost-port-duration.log": [
        '--log-format=%v:%^ %h %^ %e [%d:%t %^] "%r" %s %b "%R" "%u" %D',
        "--date-format=%d/%b/%Y", "--time-format=%T",
    ],
}
GOACCESS_DEFAULT = ["--log-format=COMBINED"]
INSTALL_GOACCESS = (
    "GoAccess is the baseline and is not installed. Install it and run again:\n"
    "  Debian/Ubuntu: apt-get update && apt-get install -y goaccess\n"
    "  macOS:         brew install goaccess"
)

# Columns that differ between two ingests of the same lines: the topic's name and the
# time the broker stamped on each record.
VOLATILE_COLUMNS = {"topic", "record_time"}


class StageFailed(Exception):
    """A measured process exited non-zero; the message ends with the tail of its output."""


@dataclass
class Sample:
    """One measured process, or a sequence of them (end to end)."""

    wall_s: float
    cpu_s: float
    peak_rss_bytes: int
    broker_cpu_s: float | None
    detail: dict | None = None


def main() -> int:
    args = _arguments()
    goaccess = shutil.which("goaccess")
    if goaccess is None:
        print(INSTALL_GOACCESS, file=sys.stderr)
        return 2
    _stop_on_sigterm()

    started = datetime.now(UTC)
    with Session(goaccess, keep=args.keep) as session:
        files = [*generated_logs(args.sizes), *([] if args.skip_real else real_logs())]
        results = [bench_file(session, path, kind,
                              args.large_repeat if path.stem.startswith("generated-10m")
                              else args.repeat)
                   for path, kind in files]
        scaling = None
        if not args.skip_scaling:
            scaling_log = generated_logs([args.scaling_size])[0][0]
            scaling = bench_workers(session, scaling_log, args.repeat)

    report = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment(goaccess),
        "options": {"sizes": args.sizes, "repeat": args.repeat,
                    "large_repeat": args.large_repeat, "partitions": PARTITIONS,
                    "quick": args.quick, "real_logs": not args.skip_real},
        "files": results,
        "scaling": scaling,
    }
    report["targets"] = judge(report)
    label = "quick" if args.quick else args.label
    written = write_results(report, label, stamped=not args.quick)
    print(f"results: {', '.join(str(p.relative_to(REPO_ROOT)) for p in written)}")
    print(written[-1].read_text())
    return 1 if failures(report) else 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100k,1m,10m",
                        help="generated log sizes, comma-separated, of " + ", ".join(SIZES))
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--large-repeat", type=int,
                        help="runs of each measurement on the 10m log (default --repeat)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 100k only, one repeat, no real logs, no scaling")
    parser.add_argument("--skip-real", action="store_true", help="leave out the shared logs")
    parser.add_argument("--skip-scaling", action="store_true", help="leave out -w 1 vs -w 2")
    parser.add_argument("--scaling-size", default="1m", choices=SIZES,
                        help="generated log that the worker comparison reads (default 1m)")
    parser.add_argument("--label", default="latest",
                        help="name of the results written beside the timestamped JSON "
                             "(default latest: latest.json and latest.md)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the session's temporary folder (stage logs, last lake)")
    parser.add_argument("--build-metrics", nargs=2, metavar=("LAKE", "DB"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.build_metrics:
        sys.exit(build_metrics(*args.build_metrics))
    if args.quick:
        args.sizes, args.repeat, args.skip_real, args.skip_scaling = "100k", 1, True, True
    args.sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in args.sizes if s not in SIZES]
    if unknown:
        parser.error(f"--sizes: unknown size {unknown[0]!r}; choose from {', '.join(SIZES)}")
    if args.repeat < 1:
        parser.error(f"--repeat: expected 1 or more, not {args.repeat}")
    args.large_repeat = args.large_repeat or args.repeat
    if args.large_repeat < 1:
        parser.error(f"--large-repeat: expected 1 or more, not {args.large_repeat}")
    return args


def _stop_on_sigterm() -> None:
    """Let SIGTERM unwind like Ctrl-C, so the broker and temporary files are cleaned up."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


class Session:
    """One embedded broker and one temporary folder for the whole benchmark."""

    def __init__(self, goaccess: str, keep: bool = False):
        self.goaccess = goaccess
        self.keep = keep
        self.folder = Path(tempfile.mkdtemp(prefix="logstack-bench-"))
        self.broker_home = self.folder / "broker"
        self.address = ""
        self.broker_pid = 0
        self.runs = 0

    def __enter__(self) -> Session:
        from logstack_dagster.ingest import broker

        try:
            run_checked([_logstack(), "broker", "start"], self.env(self.broker_home),
                        self.folder / "broker.out")
        except BaseException:
            self._clean()
            raise
        state = broker.read_state(self.broker_home / "broker")
        self.address, self.broker_pid = state.address, state.pid
        print(f"broker on {self.address}, scratch in {self.folder}", file=sys.stderr)
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run([_logstack(), "broker", "stop"], env=self.env(self.broker_home),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        self._clean()

    def _clean(self) -> None:
        if self.keep:
            print(f"kept {self.folder}", file=sys.stderr)
        else:
            shutil.rmtree(self.folder, ignore_errors=True)

    def env(self, home: Path, topic: str = "", partitions: int = PARTITIONS) -> dict:
        """The process environment of one run; inherited logstack and Kafka settings dropped."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LOGSTACK_", "KAFKA_"))}
        env.update(LOGSTACK_HOME=str(home), LOGSTACK_LAKE=str(home / "lake"),
                   KAFKA_PARTITIONS=str(partitions))
        if self.address:
            env["KAFKA_BROKERS"] = self.address
        if topic:
            env["KAFKA_TOPIC"] = topic
        return env

    def new_run(self, label: str) -> tuple[Path, str]:
        """A fresh LOGSTACK_HOME and topic name for one measured run."""
        self.runs += 1
        name = f"bench-{self.runs:03d}-{label}"
        home = self.folder / name
        home.mkdir()
        return home, name

    def drop(self, home: Path, topic: str | None) -> None:
        """Delete a run's topic from the broker (Tansu holds it in memory) and its home."""
        if topic:
            from kafka.admin import KafkaAdminClient
            from kafka.errors import KafkaError

            admin = KafkaAdminClient(bootstrap_servers=[self.address])
            try:
                admin.delete_topics([topic])
            except KafkaError:
                pass  # a run that failed before producing made no topic
            finally:
                admin.close()
        if not self.keep:
            shutil.rmtree(home, ignore_errors=True)

    def broker_cpu(self) -> float | None:
        """CPU seconds the broker has used so far, or None where /proc is missing."""
        try:
            fields = Path(f"/proc/{self.broker_pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Runs a command and writes its wall time, CPU time and peak RSS (KiB) to a file. The
# peak RSS of a child starts at its parent's RSS at fork time (Linux keeps the larger of
# the old and new high-water marks at exec), so the child is forked from this small
# launcher (about 7 MiB) rather than from the benchmark process, which holds DuckDB.
LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    out.write(f"{wall} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measure(session: Session, command: list[str], env: dict, output: Path) -> Sample:
    """Run `command` to completion and measure it; raise StageFailed on a non-zero exit."""
    numbers = session.folder / "measured.txt"
    numbers.unlink(missing_ok=True)
    broker_before = session.broker_cpu()
    with open(output, "ab") as out:
        # A process group of its own, so that an interrupted benchmark stops the stage too.
        process = subprocess.Popen([sys.executable, "-I", "-S", "-c", LAUNCHER, str(numbers),
                                    *command], env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                   start_new_session=True)
        try:
            code = process.wait()
        except BaseException:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            raise
    broker_after = session.broker_cpu()
    if code != 0:
        raise StageFailed(f"{Path(command[0]).name} exited {code}: {_tail(output)}")

    wall, cpu, peak_kib = numbers.read_text().split()
    broker = None if broker_before is None else round(broker_after - broker_before, 3)
    return Sample(wall_s=round(float(wall), 4), cpu_s=round(float(cpu), 3),
                  peak_rss_bytes=int(peak_kib) * 1024, broker_cpu_s=broker)


def run_checked(command: list[str], env: dict, output: Path) -> None:
    with open(output, "ab") as out:
        done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT, cwd=REPO_ROOT, check=False)
    if done.returncode != 0:
        raise StageFailed(f"{' '.join(command[:3])} exited {done.returncode}: {_tail(output)}")


def _tail(path: Path, lines: int = 5) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def _logstack() -> str:
    beside = BIN / "logstack"
    return str(beside) if beside.exists() else (shutil.which("logstack") or "logstack")


def generated_logs(sizes: list[str]) -> list[tuple[Path, str]]:
    """The generated log of each size, made with `logstack generate` on first use."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    logs = []
    for size in sizes:
        path = CACHE_DIR / f"generated-{size}-seed{SEED}.log"
        if not path.exists():
            print(f"generating {path.name} ...", file=sys.stderr)
            partial = path.with_suffix(".part")
            subprocess.run([_logstack(), "generate", "--lines", str(SIZES[size]),
                            "--seed", str(SEED), "--output", str(partial)],
                           check=True, stdout=subprocess.DEVNULL)
            partial.rename(path)
        logs.append((path, "generated"))
    return logs


def real_logs() -> list[tuple[Path, str]]:
    """Every real log at the top of the shared data folder.

    The `fixtures/` below it are a few lines each, in formats chosen to trip parsers; on
    them a timing measures only process start-up.
    """
    if not DATA_DIR.is_dir():
        print(f"no shared data folder at {DATA_DIR}; real logs left out", file=sys.stderr)
        return []
    return [(path, "real") for path in sorted(DATA_DIR.glob("*.log"))]


def count_lines(path: Path) -> int:
    """Lines in the file, a last line without a newline included."""
    count, last = 0, b"\n"
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 24):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def bench_file(session: Session, path: Path, kind: str, repeat: int) -> dict:
    """Every stage on one file, `repeat` times, interleaved so that noise hits all alike."""
    lines = count_lines(path)
    label = path.stem.replace("generated-", "").replace(f"-seed{SEED}", "")
    print(f"{path.name}: {lines:,} lines", file=sys.stderr)
    runs: dict[str, list[Sample]] = {}
    errors: list[str] = []
    checks: list[dict] = []

    for attempt in range(repeat):
        try:
            for stage, sample in goaccess_runs(session, path):
                runs.setdefault(stage, []).append(sample)
            measured, check = logstack_runs(session, path, label, lines)
        except StageFailed as exc:
            errors.append(str(exc))
            print(f"  run {attempt + 1}: {exc}", file=sys.stderr)
            continue
        checks.append(check)
        for stage, sample in measured.items():
            runs.setdefault(stage, []).append(sample)
        print(f"  run {attempt + 1}: " + ", ".join(
            f"{stage} {sample.wall_s:.2f} s" for stage, sample in measured.items()),
            file=sys.stderr)

    stages = {stage: summarize(samples, lines) for stage, samples in runs.items()}
    baseline = stages.get("goaccess", {}).get("lines_per_s", {}).get("median")
    for summary in stages.values():
        rate = summary["lines_per_s"]["median"]
        summary["vs_goaccess"] = round(rate / baseline, 3) if baseline and rate else None
    return {"file": path.name, "kind": kind, "lines": lines, "bytes": path.stat().st_size,
            "stages": stages, "checks": checks, "errors": errors}


def goaccess_runs(session: Session, path: Path) -> list[tuple[str, Sample]]:
    """GoAccess on the file, without and with the GeoIP database logstack uses."""
    from logstack_dagster.enrichment.geoip import default_city_db_path

    report = session.folder / "goaccess.json"
    base = [session.goaccess, str(path), *GOACCESS_FORMATS.get(path.name, GOACCESS_DEFAULT),
            "--no-progress", "--no-global-config", "-o", str(report)]
    measured = []
    for stage, extra in (("goaccess", []),
                         ("goaccess_geoip", [f"--geoip-database={default_city_db_path()}"])):
        report.unlink(missing_ok=True)
        sample = measure(session, base + extra, os.environ.copy(),
                         session.folder / "goaccess.out")
        general = json.loads(report.read_text())["general"]
        sample.detail = {k: general[k] for k in
                         ("total_requests", "valid_requests", "failed_requests")}
        measured.append((stage, sample))
    return measured


def logstack_runs(session: Session, path: Path, label: str,
                  lines: int) -> tuple[dict[str, Sample], dict]:
    """Produce, flow and metrics on a fresh topic and home; check that no line went missing."""
    home, topic = session.new_run(label)
    env = session.env(home, topic)
    out, metrics_out = home.parent / f"{topic}.out", home.parent / f"{topic}.metrics.out"
    try:
        produce = measure(session, [_logstack(), "produce", str(path)], env, out)
        flow = measure(session, [_logstack(), "flow"], env, out)
        expected = lake_check(home / "lake")
        check = dict(expected)
        # The same topic again as two processes of one cluster, into a home of its own.
        cluster_home = home.parent / f"{topic}-2p"
        flow_2p = measure(session, [_logstack(), "flow", "--processes", "2"],
                          session.env(cluster_home, topic), out)
        check["identical_2p"] = lake_check(cluster_home / "lake") == expected
        shutil.rmtree(cluster_home, ignore_errors=True)
        metrics = measure(session, [sys.executable, str(Path(__file__).resolve()),
                                    "--build-metrics", str(home / "lake"),
                                    str(home / "metrics.duckdb")], env, metrics_out)
        metrics.detail = json.loads(metrics_out.read_text().strip().splitlines()[-1])
        # File to queryable Parquet as users do it in one go: produce and ingest at once.
        loaded = {}
        for stage, extra in (("end_to_end", []), ("end_to_end_2p", ["--processes", "2"])):
            load_home, load_topic = session.new_run(f"{label}-load")
            try:
                loaded[stage] = measure(session, [_logstack(), "load", str(path), *extra],
                                        session.env(load_home, load_topic), out)
                check[f"identical_{stage}"] = lake_check(load_home / "lake") == expected
            finally:
                session.drop(load_home, load_topic)
    finally:
        session.drop(home, topic)

    check["lines"] = lines
    check["accounted"] = check["rows"] + check["quarantined"] == lines
    if not check["accounted"]:
        raise StageFailed(f"{path.name}: {lines} lines in, {check['rows']} rows + "
                          f"{check['quarantined']} quarantined out")
    if not check["identical_2p"]:
        raise StageFailed(f"{path.name}: flow --processes 2 wrote other rows than flow")
    for stage in loaded:
        if not check[f"identical_{stage}"]:
            raise StageFailed(f"{path.name}: load ({stage}) wrote other rows than flow")
    return {"produce": produce, "flow": flow, "flow_2p": flow_2p, "metrics": metrics,
            "produce_then_flow": _chain(produce, flow), **loaded}, check


def _chain(first: Sample, then: Sample) -> Sample:
    """Two stages run one after the other, measured as one."""
    return Sample(
        wall_s=round(first.wall_s + then.wall_s, 4), cpu_s=round(first.cpu_s + then.cpu_s, 3),
        peak_rss_bytes=max(first.peak_rss_bytes, then.peak_rss_bytes),
        broker_cpu_s=_add(first.broker_cpu_s, then.broker_cpu_s),
    )


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a + b, 3)


def lake_check(lake: Path) -> dict:
    """Row counts and an order-free hash of each table of the lake, volatile columns left out."""
    import duckdb

    conn = duckdb.connect()
    conn.execute("SET threads = 2")
    found = {}
    for table, count_name in (("requests", "rows"), ("quarantine", "quarantined")):
        files = sorted(str(p) for p in lake.glob(f"{table}/*/*/*/*/*.parquet"))
        if not files:
            found[count_name], found[f"{table}_hash"] = 0, None
            continue
        source = f"read_parquet({files!r}, union_by_name = true, hive_partitioning = false)"
        columns = [row[0] for row in conn.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        kept = ", ".join(f'"{c}"' for c in columns if c not in VOLATILE_COLUMNS)
        count, digest = conn.execute(
            f"SELECT count(*), bit_xor(hash(r)) FROM (SELECT {kept} FROM {source}) r").fetchone()
        found[count_name], found[f"{table}_hash"] = count, f"{digest:016x}"
    conn.close()
    return found


def build_metrics(lake_root: str, db_path: str) -> int:
    """Child process of the metrics stage: every metric table for every hour in the lake,
    one `build_hours` per table over all the hours, as a single-run backfill of the
    metric assets does.

    Prints one JSON line: hours, rows written and seconds spent per table.
    """
    import duckdb

    from logstack_dagster.lake.layout import Lake
    from logstack_dagster.metrics.tables import METRICS, build_hours

    lake = Lake.open(lake_root)
    hours = sorted({_hour_of(folder) for folder in Path(lake_root).glob("*/year=*/*/*/hour=*")})
    conn = duckdb.connect(db_path)
    seconds, written = {}, 0
    started = time.perf_counter()
    for metric in METRICS:
        began = time.perf_counter()
        written += build_hours(conn, lake, metric, hours)
        seconds[metric.name] = round(time.perf_counter() - began, 3)
    conn.close()
    print(json.dumps({"hours": len(hours), "rows": written,
                      "build_s": round(time.perf_counter() - started, 3), "tables_s": seconds}))
    return 0


def _hour_of(folder: Path) -> datetime:
    parts = dict(p.split("=") for p in folder.parts[-4:])
    return datetime(int(parts["year"]), int(parts["month"]), int(parts["day"]),
                    int(parts["hour"]), tzinfo=UTC)


# (processes, workers per process) of the scaling comparison.
LAYOUTS = ((1, 1), (1, 2), (2, 1), (2, 2))


def bench_workers(session: Session, path: Path, repeat: int) -> dict:
    """`logstack flow` as 1 or 2 processes of 1 or 2 workers on one 4-partition topic,
    the layouts taking turns."""
    lines = count_lines(path)
    home, topic = session.new_run("scaling")
    run_checked([_logstack(), "produce", str(path)],
                session.env(home, topic, SCALING_PARTITIONS), home.parent / f"{topic}.out")
    print(f"layouts on {path.name} ({SCALING_PARTITIONS} partitions)", file=sys.stderr)

    halves = _halves(session, path, lines)
    runs: dict[str, list[Sample]] = {f"p{p}w{w}": [] for p, w in LAYOUTS}
    runs[APART] = []
    errors = []
    for _ in range(repeat):
        try:
            apart_home = home / f"{APART}-{len(runs[APART])}"
            runs[APART].append(measure_apart(session, halves, apart_home, lines))
            print(f"  2 x 1 apart: {runs[APART][-1].wall_s:.2f} s", file=sys.stderr)
        except StageFailed as exc:
            errors.append(str(exc))
        for processes, workers in LAYOUTS:
            name = f"p{processes}w{workers}"
            flow_home = home / f"{name}-{len(runs[name])}"
            env = session.env(flow_home, topic, SCALING_PARTITIONS)
            try:
                sample = measure(session, [_logstack(), "flow", "-p", str(processes),
                                           "-w", str(workers)], env,
                                 home.parent / f"{topic}.out")
                sample.detail = lake_check(flow_home / "lake")
            except StageFailed as exc:
                errors.append(str(exc))
                continue
            finally:
                shutil.rmtree(flow_home, ignore_errors=True)
            runs[name].append(sample)
            print(f"  {processes} x {workers}: {sample.wall_s:.2f} s", file=sys.stderr)
    session.drop(home, topic)
    for half_home, half_topic in halves:
        session.drop(half_home, half_topic)

    outputs = {json.dumps(s.detail, sort_keys=True) for name, samples in runs.items()
               for s in samples if name != APART}
    summary = {name: summarize(samples, lines) for name, samples in runs.items() if samples}

    def speedup(faster: str) -> float | None:
        if "p1w1" not in summary or faster not in summary:
            return None
        return round(summary["p1w1"]["wall_s"]["median"] / summary[faster]["wall_s"]["median"],
                     3)

    return {"file": path.name, "lines": lines, "partitions": SCALING_PARTITIONS,
            "layouts": summary, "speedup": speedup("p1w2"),
            "speedups": {name: speedup(name) for name in summary if name != "p1w1"},
            "identical_output": len(outputs) == 1, "errors": errors}


# Two single-worker dataflows at once, each on its own topic holding half of the log, each
# into its own home: no cluster, no lake or broker partition shared. No layout of the one
# dataflow can beat this on the same machine; it measures what the machine allows.
APART = "apart"


def _halves(session: Session, path: Path, lines: int) -> list[tuple[Path, str]]:
    """The first and the second half of `path`'s `lines` lines, each produced into a topic
    of half the scaling partitions; returns each one's home and topic."""
    halves = [session.new_run(f"half{index}") for index in range(2)]
    with open(path, "rb") as log:
        for index, (home, topic) in enumerate(halves):
            half = home / "half.log"
            with open(half, "wb") as out:
                out.writelines(islice(log, lines // 2) if index == 0 else log)
            run_checked([_logstack(), "produce", str(half)],
                        session.env(home, topic, SCALING_PARTITIONS // 2),
                        home.parent / f"{topic}.out")
            half.unlink()
    return halves


def measure_apart(session: Session, halves: list[tuple[Path, str]], home: Path,
                  lines: int) -> Sample:
    """One run of `logstack flow` (1 worker) on each half at the same time: wall time until
    the later one ends, CPU summed, the larger peak RSS. Raises StageFailed unless the two
    lakes hold every line."""
    script = " & ".join(
        shlex.join(["env", f"KAFKA_TOPIC={topic}", f"LOGSTACK_HOME={home / str(i)}",
                    f"LOGSTACK_LAKE={home / str(i) / 'lake'}", _logstack(), "flow", "-w", "1"])
        for i, (_, topic) in enumerate(halves)) + "; wait"
    # `wait` gives no exit status of the first; each lake is counted instead.
    env = session.env(home)
    try:
        sample = measure(session, ["sh", "-c", script], env, home.parent / "apart.out")
        counts = [lake_check(home / str(i) / "lake") for i in range(len(halves))]
        held = sum(c["rows"] + c["quarantined"] for c in counts)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if held != lines:
        raise StageFailed(f"two flows apart: {held:,} of {lines:,} lines in their lakes")
    return sample


def summarize(samples: list[Sample], lines: int) -> dict:
    """Median, min and max of each measure over the runs, and the runs themselves."""
    def spread(values: list[float]) -> dict:
        return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
                "max": round(max(values), 4)}

    if not samples:
        return {"runs": [], "lines_per_s": {"median": None}}
    summary = {
        "lines_per_s": spread([lines / s.wall_s for s in samples]),
        "wall_s": spread([s.wall_s for s in samples]),
        "cpu_s": spread([s.cpu_s for s in samples]),
        "peak_rss_bytes": spread([s.peak_rss_bytes for s in samples]),
        "runs": [asdict(s) for s in samples],
    }
    broker = [s.broker_cpu_s for s in samples if s.broker_cpu_s is not None]
    if broker:
        summary["broker_cpu_s"] = spread(broker)
    return summary


def environment(goaccess: str) -> dict:
    """What the numbers depend on: machine, code state and tool versions."""
    from importlib.metadata import version

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=False)
        return done.stdout.strip()

    tool = subprocess.run([goaccess, "--version"], capture_output=True, text=True, check=False)
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": len(git("status", "--porcelain").splitlines()),
        "goaccess": tool.stdout.splitlines()[0].strip() if tool.stdout else "unknown",
        "packages": {name: version(name) for name in
                     ("bytewax", "pyarrow", "duckdb", "confluent-kafka", "geoip2")},
    }


def _median(results: dict, file: str, stage: str, measure_name: str) -> float | None:
    for entry in results["files"]:
        if entry["file"].startswith(f"generated-{file}-"):
            value = entry["stages"].get(stage, {}).get(measure_name, {})
            return value.get("median") if isinstance(value, dict) else value
    return None


def judge(report: dict) -> list[dict]:
    """Each target of issue #6 with the measured value; None when it was not measured."""
    def target(name: str, value, passed) -> dict:
        return {"target": name, "value": value,
                "passed": None if value is None or passed is None else bool(passed)}

    ratio_1m = _ratio(report, "1m", "end_to_end")
    ratio_1m_2p = _ratio(report, "1m", "end_to_end_2p")
    produce = [v for v in (_median(report, s, "produce", "lines_per_s") for s in ("1m", "10m"))
               if v is not None]
    peak_1m = _median(report, "1m", "flow", "peak_rss_bytes")
    peak_10m = _median(report, "10m", "flow", "peak_rss_bytes")
    peak_1m_2p = _median(report, "1m", "flow_2p", "peak_rss_bytes")
    peak_10m_2p = _median(report, "10m", "flow_2p", "peak_rss_bytes")
    growth_2p = round(peak_10m_2p / peak_1m_2p, 3) if peak_1m_2p and peak_10m_2p else None
    growth = round(peak_10m / peak_1m, 3) if peak_1m and peak_10m else None
    metrics_10m = _median(report, "10m", "metrics", "wall_s")
    scaling = report.get("scaling") or {}
    speedup = scaling.get("speedup")
    by_process = (scaling.get("speedups") or {}).get("p2w1")
    return [
        target("end to end >= 1.5x GoAccess lines/s on 1m (aim 4x)", ratio_1m,
               ratio_1m is not None and ratio_1m >= 1.5),
        target("the same with the flow as 2 processes", ratio_1m_2p,
               ratio_1m_2p is not None and ratio_1m_2p >= 1.5),
        target("produce >= 300,000 lines/s (slowest of 1m, 10m)", min(produce, default=None),
               produce and min(produce) >= 300_000),
        target("flow peak RSS at 10m <= 1.5x that at 1m", growth, growth and growth <= 1.5),
        target("flow peak RSS at 10m < 1 GiB", peak_10m, peak_10m and peak_10m < GIB),
        target("flow_2p peak RSS at 10m <= 1.5x that at 1m (largest process)", growth_2p,
               growth_2p and growth_2p <= 1.5),
        target("flow_2p peak RSS at 10m < 1 GiB (largest process)", peak_10m_2p,
               peak_10m_2p and peak_10m_2p < GIB),
        target("hourly metrics for a day of 10m rows < 10 s", metrics_10m,
               metrics_10m and metrics_10m < 10),
        target("flow -w 2 >= 1.6x faster than -w 1 on 4 partitions", speedup,
               speedup and speedup >= 1.6),
        target("flow -p 2 >= 1.6x faster than -p 1 (1 worker each) on 4 partitions",
               by_process, by_process and by_process >= 1.6),
        target("for reference, no target: two single-worker flows apart, each on half "
               "the log, vs -w 1 (what two processes can gain on this machine)",
               (scaling.get("speedups") or {}).get(APART), None),
        target("every process x worker layout writes identical rows",
               scaling.get("identical_output"), scaling.get("identical_output")),
    ]


def _ratio(report: dict, size: str, stage: str) -> float | None:
    for entry in report["files"]:
        if entry["file"].startswith(f"generated-{size}-"):
            return entry["stages"].get(stage, {}).get("vs_goaccess")
    return None


def failures(report: dict) -> list[str]:
    found = [e for entry in report["files"] for e in entry["errors"]]
    return found + ((report.get("scaling") or {}).get("errors") or [])


def write_results(report: dict, label: str, stamped: bool) -> list[Path]:
    """`<label>.json` and `<label>.md`, and a timestamped copy of the JSON when `stamped`.

    Returns the paths written, the Markdown last.
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1) + "\n"
    names = [(f"{label}.json", text), (f"{label}.md", render_markdown(report))]
    if stamped:
        stamp = report["started"].replace(":", "").replace("+0000", "Z")
        names.insert(0, (f"{stamp}.json", text))
    written = []
    for name, content in names:
        path = RESULTS_DIR / name
        partial = path.with_suffix(path.suffix + ".tmp")
        partial.write_text(content)
        partial.replace(path)
        written.append(path)
    return written


STAGE_ORDER = ("goaccess", "goaccess_geoip", "produce", "flow", "flow_2p", "metrics",
               "produce_then_flow", "end_to_end", "end_to_end_2p")


def render_markdown(report: dict) -> str:
    """The results as Markdown: one row per file and stage, then scaling and targets."""
    env = report["environment"]
    lines = [
        "# logstack benchmark",
        "",
        f"Run {report['started']} to {report['finished']} on {env['cpus']} CPUs "
        f"({env['platform']}), commit {env['commit']}"
        + (f" with {env['uncommitted_changes']} uncommitted files" if
           env["uncommitted_changes"] else "")
        + f", {env['goaccess']}, Python {env['python']}. Medians of {report['options']['repeat']}"
        " runs, [min-max] of wall time; `vs GoAccess` divides lines/s by GoAccess's (no GeoIP) "
        "on the same file in the same session. `produce`, `flow` and `end_to_end` use a "
        f"{report['options']['partitions']}-partition topic and one worker; the `_2p` stages "
        "run the flow as 2 processes of one worker (CPU summed, peak RSS of the largest). "
        "`end_to_end` is `logstack load`, producing and ingesting at once; "
        "`produce_then_flow` adds up the two stages run one after the other. "
        + (f"The 10m log ran {report['options'].get('large_repeat')} time(s). "
           if report["options"].get("large_repeat", report["options"]["repeat"])
           != report["options"]["repeat"] else "")
        + "Broker CPU is the embedded Tansu broker's CPU time during the stage.",
        "",
        "| file | lines | stage | lines/s | vs GoAccess | wall s [min-max] | CPU s "
        "| broker CPU s | peak RSS MiB |",
        "|---|--:|---|--:|--:|---|--:|--:|--:|",
    ]
    for entry in report["files"]:
        for stage in STAGE_ORDER:
            summary = entry["stages"].get(stage)
            if not summary or not summary.get("runs"):
                continue
            lines.append(_stage_row(entry, stage, summary))
        for error in entry["errors"]:
            lines.append(f"| {entry['file']} | | error | {error[:120]} | | | | | |")

    scaling = report.get("scaling")
    if scaling:
        lines += ["", f"## Processes and workers on {scaling['file']} "
                      f"({scaling['partitions']} partitions)", "",
                  "| processes x workers | lines/s | speed-up | wall s [min-max] | CPU s "
                  "| peak RSS MiB |", "|--:|--:|--:|---|--:|--:|"]
        for name, summary in scaling["layouts"].items():
            wall = summary["wall_s"]
            shown = ("2 x 1 apart" if name == APART else
                     " x ".join(name[1:].split("w")))
            gain = scaling["speedups"].get(name, 1.0)
            lines.append(f"| {shown} | {summary['lines_per_s']['median']:,.0f} | "
                         f"{'' if gain is None else f'{gain:.2f}x'} | "
                         f"{wall['median']:.2f} [{wall['min']:.2f}-{wall['max']:.2f}] | "
                         f"{summary['cpu_s']['median']:.1f} | "
                         f"{summary['peak_rss_bytes']['median'] / 2**20:,.0f} |")
        lines += ["", f"Identical output in every layout: {scaling['identical_output']}."]
        if APART in scaling["layouts"]:
            lines += ["", "`2 x 1 apart` is not a layout of one dataflow: two single-worker "
                      "flows run at once, each on its own topic of "
                      f"{scaling['partitions'] // 2} partitions holding half of the log, each "
                      "into its own home. Nothing is shared but the broker and the machine, "
                      "so no layout of one dataflow can beat it here: it is the speed-up "
                      "this machine allows two processes."]

    lines += ["", "## Targets of issue #6", "", "| target | measured | met |", "|---|--:|---|"]
    for item in report["targets"]:
        value = item["value"]
        shown = ("not measured" if value is None else
                 f"{value / 2**20:,.0f} MiB" if "< 1 GiB" in item["target"] else
                 f"{value:,.0f}" if isinstance(value, float) and value > 1000 else str(value))
        met = {True: "yes", False: "**no**", None: "-"}[item["passed"]]
        lines.append(f"| {item['target']} | {shown} | {met} |")
    return "\n".join(lines) + "\n"


def _stage_row(entry: dict, stage: str, summary: dict) -> str:
    wall = summary["wall_s"]
    ratio = summary.get("vs_goaccess")
    broker = summary.get("broker_cpu_s", {}).get("median")
    return (f"| {entry['file']} | {entry['lines']:,} | {stage} | "
            f"{summary['lines_per_s']['median']:,.0f} | "
            f"{'' if ratio is None else f'{ratio:.2f}x'} | "
            f"{wall['median']:.2f} [{wall['min']:.2f}-{wall['max']:.2f}] | "
            f"{summary['cpu_s']['median']:.2f} | {'' if broker is None else f'{broker:.2f}'} | "
            f"{summary['peak_rss_bytes']['median'] / 2**20:,.0f} |")


if __name__ == "__main__":
    sys.exit(main())
