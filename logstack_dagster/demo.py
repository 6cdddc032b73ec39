"""The main job end to end, as `logstack demo` runs it.

broker -> topic -> produce the log -> ingest run (Dagster, Bytewax) -> metrics runs
(Dagster, DuckDB) -> the starter answers -> a count that every line is accounted for.
"""

from __future__ import annotations

import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from logstack_dagster.errors import LogstackError
from logstack_dagster.settings import Settings
from logstack_dagster.words import plural

# What `--fresh` removes from LOGSTACK_HOME: everything a demo run leaves behind.
_DEMO_STATE = ("lake", "recovery", "dagster", "metrics.duckdb", "metrics.duckdb.wal", "sample")


def run_demo(settings: Settings, log_file: Path | None, lines: int, fresh: bool) -> int:
    """Run the demo; return the exit code (1 when the counts do not add up)."""
    from logstack_dagster.ingest import topic
    from logstack_dagster.materialize import open_instance, run_ingest
    from logstack_dagster.report.run import print_report, write_html

    if fresh:
        _stop_left_broker(settings)
        for name in _DEMO_STATE:
            _remove(settings.home / name)
    elif (settings.home / "lake").exists():
        raise LogstackError(f"{settings.home} already holds a lake; the demo counts from an "
                        "empty one: pass --fresh to clear it, or set LOGSTACK_HOME elsewhere")
    settings.home.mkdir(parents=True, exist_ok=True)

    with _broker(settings) as cluster:
        log_file = log_file or _sample(settings, lines)
        with _step(f"creating topic {settings.topic!r} on {cluster.brokers}"):
            partitions = topic.ensure_topic(cluster, settings.topic, settings.partitions)
            held = sum(topic.exact_end_offsets(cluster, settings.topic).values())
            if held:
                raise LogstackError(
                    f"topic {settings.topic!r} on {cluster.brokers} already holds {held:,} "
                    "records; the demo counts from an empty one: pass --fresh (it stops the "
                    "embedded broker a killed demo left running) or set KAFKA_TOPIC elsewhere")
        with _step(f"producing {log_file}"):
            produced = topic.produce_file(cluster, settings.topic, log_file, partitions)
        _say(f"  {produced:,} lines in {partitions} partitions")

        instance = open_instance(settings.dagster_home)
        with _step("ingesting through Dagster (ingest_job runs the Bytewax dataflow)"):
            ingested = run_ingest(instance, settings)
        _say(f"  {ingested['records']:,} records: {ingested['rows']:,} rows, "
             f"{ingested['quarantined']:,} quarantined, "
             f"{plural(ingested['files'], 'Parquet file')}")
        with _step("materializing the hourly metrics through Dagster"):
            runs = materialize_lake(settings, instance)
        _say(f"  {plural(len(runs), 'run')} of hourly_metrics_job")

        _say("")
        answers = print_report(settings, as_json=False, top=10, whois_timeout=2.0)
        report = write_html(answers, settings.home / "report.html")
        code = _account(settings, produced)
    _summary(settings, answers, produced, report)
    return code


def materialize_lake(settings: Settings, instance=None) -> list[str]:
    """Build the hourly metrics of every hour the current topic's lake holds."""
    from logstack_dagster.materialize import open_instance, run_metrics, topic_hour_lines

    instance = instance or open_instance(settings.dagster_home)
    return run_metrics(instance, settings, sorted(topic_hour_lines(settings)))


def _account(settings: Settings, produced: int) -> int:
    """Check that every produced line is a row or a quarantined line, exactly once."""
    from logstack_dagster.lake.duck import connect
    from logstack_dagster.lake.layout import Lake

    conn = connect(Lake.open(settings.lake), None)
    rows, quarantined, distinct = conn.execute("""
        SELECT (SELECT count(*) FROM requests), (SELECT count(*) FROM quarantine),
               (SELECT count(*) FROM (SELECT DISTINCT topic, "partition", "offset" FROM requests
                UNION ALL SELECT DISTINCT topic, "partition", "offset" FROM quarantine))
    """).fetchone()
    _say("")
    if rows + quarantined == produced == distinct:
        _say(f"Every line accounted for: {produced:,} produced = {rows:,} rows "
             f"+ {quarantined:,} quarantined.")
        _say(f"Lake: {settings.lake}   metrics: {settings.duckdb_path}")
        return 0
    _say(f"COUNTS DO NOT ADD UP: {produced:,} produced, {rows:,} rows, "
         f"{quarantined:,} quarantined, {distinct:,} distinct offsets")
    return 1


def _summary(settings: Settings, answers, produced: int, report: Path) -> None:
    """The last lines of the demo: what was counted, and where to look next."""
    hours = plural(answers.hours, 'hour')
    span = ""
    if answers.first_hour is not None and answers.last_hour is not None:
        span = (f" ({answers.first_hour:%Y-%m-%d %H:00} to "
                f"{answers.last_hour:%Y-%m-%d %H:00} UTC)")
    lines = [f"  counted  {produced:,} lines: {answers.requests:,} requests, "
             f"{answers.quarantined:,} quarantined",
             f"  over     {hours}{span}"]
    if answers.audience:
        humans = sum(row.get("humans", 0) for row in answers.traffic)
        bots = sum(row.get("bots", 0) for row in answers.traffic)
        busiest = answers.bots[0]["bot_name"] if answers.bots else "none"
        other = answers.requests - humans - bots
        lines.append(f"  people   {humans:,} requests; bots {bots:,} (busiest: {busiest}); "
                     f"no or unknown agent {other:,}")
    if answers.countries:
        top = answers.countries[0]
        lines.append(f"  most     requests from {top.get('country_name') or top.get('country')}"
                     f" ({top['requests']:,})")
    lines += [f"  report   {report.resolve()}",
              f"  query    LOGSTACK_HOME={settings.home} logstack query  (a DuckDB shell)"]
    _say("")
    _say("Summary")
    for line in lines:
        _say(line)


@contextmanager
def _broker(settings: Settings):
    """The cluster to use; starts the embedded broker and stops it after, when it is used."""
    from logstack_dagster.ingest import broker, topic

    if settings.brokers:
        cluster = topic.resolve_cluster(settings)
        topic.wait_reachable(cluster)
        yield cluster
        return

    already = broker.read_state(settings.broker_dir)
    with _step("starting the embedded broker (Tansu)"):
        state = broker.start(settings.broker_dir)
    _say(f"  listening on {state.address}")
    try:
        yield topic.resolve_cluster(settings)
    finally:
        if already is None or not already.alive:
            broker.stop(settings.broker_dir)
            _say("stopped the embedded broker")


def _stop_left_broker(settings: Settings) -> None:
    """Stop the embedded broker of this home that a killed demo left running: its topic
    holds that demo's lines, which this one would count again."""
    from logstack_dagster.ingest import broker

    if settings.brokers:
        return
    state = broker.read_state(settings.broker_dir)
    if state is not None and state.alive:
        broker.stop(settings.broker_dir)
        _say(f"stopped the embedded broker left running on {state.address}")


def _sample(settings: Settings, lines: int) -> Path:
    from logstack_dagster.sample.generate import write_log

    path = settings.home / "sample" / "access.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _step(f"generating a sample of {lines:,} lines"):
        # Few odd lines: enough to show the quarantine, too few to fail the parse check.
        write_log(path, lines, odd_share=0.005)
    _say("  it holds a few malformed lines on purpose: expect them in the quarantine, and a "
         "warning (not an error) from the parse-failure check in an hour where they bunch")
    return path


@contextmanager
def _step(text: str):
    started = time.monotonic()
    _say(f"{text} ...")
    yield
    _say(f"  done in {time.monotonic() - started:.1f} s")


def _say(text: str) -> None:
    print(text, flush=True)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    sys.stdout.flush()
