"""The `logstack` command line.

Every command reads its defaults from the environment (`KAFKA_BROKERS`, `KAFKA_TOPIC`,
`LOGSTACK_HOME`, ...; see `settings.py`) and its flags override them. A user's mistake
ends in one line on stderr naming the problem and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import stat
import sys
from pathlib import Path

from logstack_dagster.errors import LogstackError
from logstack_dagster.flags import seconds as _seconds
from logstack_dagster.settings import Settings, load_settings, topic_name_problem
from logstack_dagster.words import plural

EXIT_USAGE = 2
EXIT_FAILED = 1


class UserError(LogstackError):
    """A bad flag or argument; its message names it."""


def main(argv: list[str] | None = None) -> int:
    _quiet_library_warnings()
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    # Before the command only -h is known; name any other flag there, not the missing command.
    leading = list(itertools.takewhile(lambda arg: arg.startswith("-"), argv))
    if unknown := [arg for arg in leading if arg not in ("-h", "--help")]:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args = parser.parse_args(argv)
    try:
        settings = load_settings().with_overrides(
            brokers=getattr(args, "brokers", None), topic=getattr(args, "topic", None),
            partitions=getattr(args, "partitions", None))
        return args.handler(args, settings) or 0
    except KeyboardInterrupt as exc:
        # An interruption that knows how far it got says so (see ProduceInterrupted).
        print(f"logstack: interrupted: {exc}" if str(exc) else "logstack: interrupted",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`logstack parse FILE | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except LogstackError as exc:
        print(f"logstack: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UserError) else EXIT_FAILED
    except OSError as exc:
        # A path that is missing, a folder, a file, unreadable (LOGSTACK_HOME under a file,
        # say), or a disk that fails. Raised by the system it has both; raised by our code
        # with a message, only that.
        said = exc.strerror.lower() if exc.strerror else str(exc)
        if exc.strerror and exc.filename is not None:
            said += f": {exc.filename}"
        print(f"logstack: error: {said}", file=sys.stderr)
        mistakes = (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError,
                    PermissionError)
        return EXIT_USAGE if isinstance(exc, mistakes) else EXIT_FAILED


def _quiet_library_warnings() -> None:
    """Keep Dagster's notes on beta and preview features out of the command's output."""
    import warnings

    warnings.filterwarnings("ignore", message=".*is currently in (beta|preview)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logstack",
        description="Access logs into a Kafka topic, a Parquet lake and hourly DuckDB "
                    "metrics, orchestrated by Dagster.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="the main job end to end on a sample or a log")
    demo.add_argument("--log", type=Path, help="log file to use instead of a generated sample")
    demo.add_argument("--lines", type=_positive_int, default=50_000,
                      help="lines of the generated sample (default 50000)")
    demo.add_argument("--fresh", action="store_true",
                      help="delete the lake, metrics and Dagster history of LOGSTACK_HOME first")
    _topic_flags(demo, partitions=True)
    demo.set_defaults(handler=_demo)

    broker = commands.add_parser("broker", help="start, stop or check the embedded broker")
    broker.add_argument("action", choices=["start", "stop", "status"])
    broker.set_defaults(handler=_broker)

    produce = commands.add_parser("produce", help="produce every line of a file to the topic")
    produce.add_argument("file", type=Path, help="log file, or - for standard input")
    _topic_flags(produce, partitions=True)
    produce.set_defaults(handler=_produce)

    load = commands.add_parser(
        "load", help="produce a file and ingest it into the lake at the same time")
    load.add_argument("file", type=Path, help="log file")
    load.add_argument("--processes", "-p", type=_positive_int,
                      help="dataflow processes (default LOGSTACK_FLOW_PROCESSES or 1)")
    load.add_argument("--workers", "-w", type=_positive_int,
                      help="workers per process (default LOGSTACK_FLOW_WORKERS or 1)")
    load.add_argument("--format", help="log format (preset name or LogFormat string)")
    _topic_flags(load, partitions=True)
    load.set_defaults(handler=_load)

    flow = commands.add_parser("flow", help="run the dataflow from the topic into the lake")
    flow.add_argument("--workers", "-w", type=_positive_int,
                      help="workers per process (default LOGSTACK_FLOW_WORKERS or 1)")
    flow.add_argument("--processes", "-p", type=_positive_int,
                      help="processes of one Bytewax cluster on this machine, each with "
                           "--workers workers (default LOGSTACK_FLOW_PROCESSES or 1)")
    flow.add_argument("--follow", action="store_true",
                      help="keep reading new records instead of exiting when caught up")
    flow.add_argument("--format", help="log format (preset name or LogFormat string)")
    flow.add_argument("--broker-timeout", type=_seconds, default=60.0,
                      help="seconds without a reachable broker, at the start or mid-run, "
                           "before giving up (default 60)")
    flow.add_argument("--commit-seconds", type=_seconds,
                      help="the longest a partition's records wait to be written while "
                           "fewer than a file's worth come (default 60; 0: every few "
                           "seconds, many small files)")
    _topic_flags(flow)
    flow.set_defaults(handler=_flow)

    parse = commands.add_parser("parse", help="parse lines and print one JSON object each")
    parse.add_argument("file", nargs="?", default="-", help="log file, or - (default)")
    parse.add_argument("--format", help="preset name or LogFormat string (default: detect)")
    parse.set_defaults(handler=_parse)

    requeue = commands.add_parser(
        "requeue", help="parse the quarantined lines again, e.g. after a format fix")
    requeue.add_argument("--format", help="preset name or LogFormat string (default: detect)")
    requeue.add_argument("--reason", action="append", metavar="CODE",
                         help="only lines quarantined for this reason (repeatable)")
    requeue.add_argument("--dry-run", action="store_true",
                         help="count what would parse now; write nothing")
    requeue.add_argument("--no-metrics", action="store_true",
                         help="do not rebuild the metrics of the hours that change")
    _topic_flags(requeue)
    requeue.set_defaults(handler=_requeue)

    from logstack_dagster.report.filters import bound_type

    compact = commands.add_parser(
        "compact", help="merge the small files of past hours, one file per topic partition")
    compact.add_argument("--before", type=bound_type("before"), metavar="TIME",
                         help="only hours that end by then, ISO date or time, UTC unless an "
                              "offset is given (default: the start of the previous hour)")
    compact.add_argument("--grace-seconds", type=_seconds, default=None, metavar="S",
                         help="how long replaced files stay for readers that listed them, "
                              "also those of earlier passes (default 900; 0 deletes them at "
                              "once, unsafe while others read the lake)")
    compact.set_defaults(handler=_compact)

    query = commands.add_parser(
        "query", help="run SQL over the lake and the metric tables, or open a DuckDB shell")
    query.add_argument("sql", nargs="?",
                       help="SQL; views `requests` and `quarantine`, the metric tables. "
                            "Without it: an interactive shell (statements from a pipe)")
    query.add_argument("--json", action="store_true", help="one JSON object per row")
    query.add_argument("--csv", action="store_true", help="CSV with a header line")
    query.add_argument("--write", action="store_true",
                       help="open the metric tables read-write (default read-only)")
    query.set_defaults(handler=_query)

    report = commands.add_parser(
        "report", help="the answers as text tables, JSON, an HTML page or PNG charts")
    report.add_argument("--json", action="store_true", help="one JSON object")
    report.add_argument("--html", type=Path, metavar="FILE",
                        help="write one self-contained HTML page of charts")
    report.add_argument("--png", type=Path, metavar="DIR",
                        help="write every chart as a PNG file into DIR")
    report.add_argument("--from", dest="start", type=bound_type("from"), metavar="TIME",
                        help="first hour, ISO date or time, UTC unless an offset is given")
    report.add_argument("--to", dest="end", type=bound_type("to"), metavar="TIME",
                        help="last hour kept (a bare date keeps its whole day)")
    report.add_argument("--vhost", help="only requests to this virtual host")
    audience = report.add_mutually_exclusive_group()
    audience.add_argument("--humans", dest="audience", action="store_const", const="humans",
                          help="only people's browsers (needs the user-agent columns)")
    audience.add_argument("--bots", dest="audience", action="store_const", const="bots",
                          help="only bots (needs the user-agent columns)")
    report.add_argument("--source", choices=["metrics", "lake"],
                        help="force where the numbers come from (default: the metric "
                             "tables when they can answer, else the lake)")
    report.add_argument("--top", type=_positive_int, default=20)
    report.add_argument("--whois-timeout", type=_seconds, default=2.0,
                        help="seconds per owner-network lookup (default 2)")
    report.add_argument("--no-owners", action="store_true",
                        help="skip the owner-network lookups of the offenders")
    report.set_defaults(handler=_report)

    materialize = commands.add_parser(
        "materialize", help="build the hourly metrics of every hour in the lake via Dagster")
    _topic_flags(materialize)
    materialize.set_defaults(handler=_materialize)

    generate = commands.add_parser("generate", help="write a realistic sample access log")
    generate.add_argument("--lines", type=_positive_int, default=50_000)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--output", "-o", type=Path, help="file to write (default stdout)")
    generate.set_defaults(handler=_generate)
    return parser


def _topic_flags(parser: argparse.ArgumentParser, partitions: bool = False) -> None:
    parser.add_argument("--brokers", help="Kafka bootstrap servers (default KAFKA_BROKERS)")
    parser.add_argument("--topic", type=_topic_name,
                        help="topic name (default KAFKA_TOPIC or 'requests')")
    if partitions:
        parser.add_argument("--partitions", type=_positive_int,
                            help="partitions when creating the topic (default 2)")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text!r}")
    return int(text)


def _topic_name(text: str) -> str:
    problem = topic_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from logstack_dagster.demo import run_demo

    if args.log is not None and not args.log.is_file():
        raise UserError(f"--log: no such file: {args.log}")
    return run_demo(settings, log_file=args.log, lines=args.lines, fresh=args.fresh)


def _broker(args: argparse.Namespace, settings: Settings) -> int:
    from logstack_dagster.ingest import broker

    if args.action == "start":
        state = broker.start(settings.broker_dir)
        print(f"embedded broker running on {state.address} (pid {state.pid})")
    elif args.action == "stop":
        stopped = broker.stop(settings.broker_dir)
        print("embedded broker stopped" if stopped else "no embedded broker was running")
    else:
        state = broker.read_state(settings.broker_dir)
        if state is None or not state.alive:
            print("embedded broker: not running")
            return EXIT_FAILED
        print(f"embedded broker running on {state.address} (pid {state.pid})")
    return 0


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    from logstack_dagster.ingest import topic

    if str(args.file) != "-":
        # The file first: a typo in its name is the likelier mistake, and the cheaper check.
        _check_readable(args.file)
    cluster = topic.resolve_cluster(settings)
    topic.wait_reachable(cluster)
    partitions = topic.ensure_topic(cluster, settings.topic, settings.partitions)

    progress, interval = _progress_printer()
    if str(args.file) == "-":
        count = topic.produce(cluster, settings.topic, topic.iter_lines(sys.stdin.buffer),
                              partitions, progress, interval=interval)
    else:
        count = topic.produce_file(cluster, settings.topic, args.file, partitions, progress,
                                   interval=interval)
    print(f"produced {count:,} lines to {settings.topic!r} on {cluster.brokers}")
    return 0


def _load(args: argparse.Namespace, settings: Settings) -> int:
    from logstack_dagster.streaming.load import load_file

    _check_readable(args.file)
    if args.format:
        _check_format(args.format)
    progress, interval = _progress_printer()
    loaded = load_file(settings, args.file, processes=args.processes or settings.flow_processes,
                       workers=args.workers or settings.flow_workers, log_format=args.format,
                       progress=progress, interval=interval)
    summary = loaded.summary
    print(f"produced {loaded.produced:,} lines to {settings.topic!r}; ingested "
          f"{summary['records']:,} records: {summary['rows']:,} rows, "
          f"{summary['quarantined']:,} quarantined, {plural(summary['files'], 'file')}")
    _warn_if_nothing_parsed(summary)
    return 0


def _check_readable(path: Path) -> None:
    """Fail now, naming `path`, when it cannot be read. A named pipe is not opened: the
    writer's lines would go to this open, and the one that reads them would wait for ever."""
    if not stat.S_ISFIFO(os.stat(path).st_mode):
        with open(path, "rb"):
            pass


def _warn_if_nothing_parsed(summary: dict) -> None:
    """Say so when a run quarantined every record: most often the log's format changed."""
    if summary["records"] and not summary["rows"]:
        print(f"logstack: warning: none of the {summary['records']:,} records parsed; all are "
              "in the quarantine (see `logstack query \"SELECT reason, format, count(*) FROM "
              "quarantine GROUP BY ALL\"`). If the log's format changed, `logstack requeue "
              "--format F` parses them and `logstack flow --format F` reads new lines with it.",
              file=sys.stderr)


def _progress_printer():
    """How producing reports progress, and how often: at a terminal one line is redrawn
    twice a second; into a file or a pipe a line is added every 5 seconds, so a log of a
    long run shows steady progress."""
    from logstack_dagster.ingest import topic

    live = sys.stderr.isatty()

    def progress(state: topic.Progress) -> None:
        if live:
            print(f"\r\033[K{state.describe()}", end="\n" if state.finished else "",
                  file=sys.stderr, flush=True)
        else:
            print(state.describe(), file=sys.stderr, flush=True)

    return progress, 0.5 if live else 5.0


def _flow(args: argparse.Namespace, settings: Settings) -> int:
    from logstack_dagster.streaming.cluster import MemberFailed
    from logstack_dagster.streaming.run import FlowOptions, run_flow

    if args.format:
        _check_format(args.format)
    options = FlowOptions(workers=args.workers or settings.flow_workers,
                          processes=args.processes or settings.flow_processes,
                          follow=args.follow, log_format=args.format,
                          broker_timeout=args.broker_timeout,
                          commit_seconds=args.commit_seconds)
    try:
        summary = run_flow(settings, options)
    except MemberFailed as exc:
        print(f"logstack: error: {exc}", file=sys.stderr)
        return exc.code
    print(f"ingested {summary['records']:,} records: {summary['rows']:,} rows, "
          f"{summary['quarantined']:,} quarantined, {plural(summary['files'], 'file')}")
    _warn_if_nothing_parsed(summary)
    return 0


def _parse(args: argparse.Namespace, settings: Settings) -> int:
    fmt = _check_format(args.format) if args.format else settings.log_format
    if args.file == "-":
        _print_parsed(sys.stdin.buffer, fmt)
    else:
        with open(args.file, "rb") as stream:
            _print_parsed(stream, fmt)
    return 0


def _requeue(args: argparse.Namespace, settings: Settings) -> int:
    from logstack_dagster.lake.layout import Lake
    from logstack_dagster.lake.requeue import requeue

    fmt = _check_format(args.format) if args.format else settings.log_format
    result = requeue(Lake.open(settings.lake), fmt, settings=settings, reasons=args.reason,
                     dry_run=args.dry_run)
    for reason in result.absent_reasons:
        print(f"logstack requeue: --reason {reason!r}: no quarantined line has it; their "
              f"reasons are {', '.join(result.present_reasons) or 'none (empty quarantine)'}",
              file=sys.stderr)
    verb = "would parse" if args.dry_run else "parsed"
    print(f"{result.examined:,} quarantined lines examined: {verb} {result.parsed:,}, "
          f"{result.still_rejected:,} still rejected")
    if result.parsed and not args.dry_run:
        print(f"wrote {len(result.files)} requeue files over {len(result.hours)} hours")
        if not args.no_metrics:
            from logstack_dagster.materialize import open_instance, run_metrics

            runs = run_metrics(open_instance(settings.dagster_home), settings,
                               sorted(result.hours))
            print(f"rebuilt the metrics of those hours in {plural(len(runs), 'run')}")
    return 0


def _compact(args: argparse.Namespace, settings: Settings) -> int:
    from logstack_dagster.lake.compact import GRACE_SECONDS, compact
    from logstack_dagster.lake.layout import Lake

    grace = GRACE_SECONDS if args.grace_seconds is None else args.grace_seconds
    lake = Lake.open(settings.lake)
    if not lake.list_dirs(lake.path("_manifest")):
        raise UserError(f"the lake at {settings.lake} holds no commit records; is "
                        "LOGSTACK_LAKE (or LOGSTACK_HOME) the lake's?")
    result = compact(lake, settings.home, before=args.before, grace_seconds=grace)
    hours = len(result.hours)
    print(f"merged {result.replaced_files:,} files into {result.merged_files:,} "
          f"({result.rows:,} rows) over {hours} hour{'' if hours == 1 else 's'}; deleted "
          f"{result.deleted_files:,} replaced files whose {grace:g} s were over"
          + (f"; undid {result.undone} merges a crash interrupted" if result.undone else ""))
    return 0


def _print_parsed(stream, fmt, batch_size: int = 10_000) -> None:
    """Print one JSON object per input line, in input order: fields, or the rejection."""
    from itertools import islice

    from logstack_dagster.ingest.topic import iter_lines
    from logstack_dagster.parser import parse_lines

    lines = iter_lines(stream)
    number = 0
    while batch := list(islice(lines, batch_size)):
        result = parse_lines(batch, fmt)
        fmt = fmt or result.format_name
        out: dict[int, dict] = {}
        for row in result.rows.to_pylist():
            index = row.pop("line_index")
            out[index] = row
        for reject in result.rejects.to_pylist():
            index = reject["line_index"]
            out[index] = {"error": reject["message"], "reason": reject["reason"],
                          "line_number": number + index + 1,
                          "raw": batch[index].decode("utf-8", "backslashreplace")}
        for index in range(len(batch)):
            print(json.dumps(out[index], default=_json_value, ensure_ascii=False))
        number += len(batch)


def _json_value(value):
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def _check_format(spec: str):
    from logstack_dagster.parser import resolve_format

    try:
        return resolve_format(spec)
    except ValueError as exc:
        raise UserError(f"--format: {exc}") from None


def _query(args: argparse.Namespace, settings: Settings) -> int:
    import duckdb

    from logstack_dagster.lake.duck import connect
    from logstack_dagster.lake.layout import Lake

    if args.json and args.csv:
        raise UserError("--json and --csv: choose one output format")
    conn = connect(Lake.open(settings.lake), settings.duckdb_path, read_only=not args.write)
    conn.execute("SET TimeZone = 'UTC'")
    try:
        if args.sql is None:
            return _query_shell(conn, settings, write=args.write)
        try:
            cursor = conn.execute(args.sql)
        except duckdb.Error as exc:
            hint = ""
            if "read-only" in str(exc).lower() and not args.write:
                hint = "; the metric tables are read-only unless --write is given"
            elif "hourly_" in str(exc) and "does not exist" in str(exc):
                hint = ("; the metric tables are built by `logstack materialize` (or "
                        "`logstack demo`) once the lake holds data")
            raise UserError(f"query failed: {str(exc).splitlines()[0]}{hint}") from None
        # DuckDB gives no cursor for SQL without a statement (blank, or comments only).
        if cursor is None or cursor.description is None:
            return 0
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    finally:
        conn.close()
    if args.json:
        for row in rows:
            print(json.dumps(dict(zip(names, row)), default=_json_value))
    elif args.csv:
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows(rows)
    else:
        from logstack_dagster.report.answers import text_table

        print("\n".join(line[2:] for line in text_table(names, rows)))
    return 0


def _query_shell(conn, settings: Settings, write: bool) -> int:
    """The interactive shell at a terminal; from a pipe, run its statements and fail on
    any error."""
    from logstack_dagster.report.shell import Shell, interact

    shell = Shell(conn, sys.stdout, sys.stderr, write_hint=not write)
    if sys.stdin.isatty():
        settings.home.mkdir(parents=True, exist_ok=True)
        return interact(shell, input, prompt=True, history=str(settings.home / "query_history"))
    return interact(shell, lambda _prompt: _read_stdin_line(), prompt=False)


def _read_stdin_line() -> str:
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from logstack_dagster.report.filters import FilterError, ReportFilter
    from logstack_dagster.report.run import print_report

    if not args.whois_timeout > 0:
        raise UserError(f"--whois-timeout: expected seconds above 0, not {args.whois_timeout}")
    if args.html is not None and args.html.is_dir():
        raise UserError(f"--html: expected a file name, not the folder {args.html}")
    if args.html is not None and not args.html.resolve().parent.is_dir():
        raise UserError(f"--html: no such folder: {args.html.resolve().parent}")
    if args.png is not None and args.png.exists() and not args.png.is_dir():
        raise UserError(f"--png: expected a folder, not the file {args.png}")
    try:
        report_filter = ReportFilter(start=args.start, end=args.end, vhost=args.vhost,
                                     audience=args.audience)
    except FilterError as exc:
        raise UserError(str(exc)) from None
    import duckdb

    try:
        print_report(settings, as_json=args.json, top=args.top,
                     whois_timeout=args.whois_timeout, report_filter=report_filter,
                     html=args.html, png=args.png, prefer=args.source,
                     owners=not args.no_owners)
    except FilterError as exc:
        raise UserError(str(exc)) from None
    except duckdb.Error as exc:
        # A query the lake's rows break (a value no metric column holds, say) is named in
        # one line with what DuckDB said, and where to look.
        raise LogstackError(f"the report's query of {settings.lake} failed: "
                            f"{str(exc).splitlines()[0]}") from None
    return 0


def _materialize(args: argparse.Namespace, settings: Settings) -> int:
    from logstack_dagster.lake.layout import shown_hour
    from logstack_dagster.materialize import materialize_hours, open_instance, topic_hour_lines

    lines = topic_hour_lines(settings)
    outcome = materialize_hours(open_instance(settings.dagster_home), settings, sorted(lines))

    def skipped(hours) -> str:
        count = sum(lines[h] for h in hours)
        span = (shown_hour(hours[0]) if len(hours) == 1 else
                f"{shown_hour(hours[0])} to {shown_hour(hours[-1])}")
        return f"{plural(len(hours), 'hour')} ({plural(count, 'line')}, {span} UTC)"

    if outcome.before_first:
        print(f"logstack materialize: skipped {skipped(outcome.before_first)} before "
              f"LOGSTACK_FIRST_HOUR ({settings.first_hour}), where the hourly partitions "
              "begin; set it earlier to count them", file=sys.stderr)
    if outcome.after_last:
        print(f"logstack materialize: skipped {skipped(outcome.after_last)} from "
              f"{shown_hour(outcome.partitions_end)} UTC on: an hour is built once it has "
              "ended", file=sys.stderr)
    for held in outcome.held:
        print(f"logstack materialize: held back {held.describe()}", file=sys.stderr)
    print(f"materialized the hourly metrics in {plural(len(outcome.run_ids), 'run')}")
    outcome.raise_problem()
    return 0


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from logstack_dagster.sample.generate import generate_lines, write_log

    if args.output is None:
        out = sys.stdout.buffer
        for line in generate_lines(args.lines, seed=args.seed):
            out.write(line + b"\n")
        return 0
    count = write_log(args.output, args.lines, seed=args.seed)
    print(f"wrote {count:,} lines to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
