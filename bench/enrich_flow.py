"""What enrichment costs the real dataflow, broker and sink included.

`enrich_bench.py` measures the batch step alone, which makes the enrichment's share look
as large as it can be. This script asks the question of issue #5 as it is put: on a log
of 1,000,000 lines with 20,000 distinct addresses and 2,000 distinct user agents (the
same seeded log), how much of `logstack flow`'s throughput does enrichment take? It
produces the log once into a topic of the embedded broker, then runs the flow on it
into fresh lakes, alternately with and without enrichment (`--no-enrich`), `--repeat`
times each, and compares the medians of wall and CPU time.

    .venv/bin/python bench/enrich_flow.py                  # 1M lines, 3 runs each
    .venv/bin/python bench/enrich_flow.py --lines 200000 --repeat 1

Writes `bench/results/enrich-flow.json` and `.md`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from enrich_bench import make_log
from run import RESULTS_DIR, Session, _logstack, lake_check, measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--addresses", type=int, default=20_000)
    parser.add_argument("--agents", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with Session(goaccess="") as session:
        log = session.folder / "enrich.log"
        log.write_bytes(b"".join(line + b"\n" for line in make_log(
            args.lines, args.addresses, args.agents, args.seed)))
        home, topic = session.new_run("produce")
        measure(session, [_logstack(), "produce", str(log)], session.env(home, topic),
                session.folder / "produce.out")

        runs: dict[str, list] = {"enriched": [], "parsed only": []}
        for round_ in range(args.repeat):
            for label, extra in (("enriched", []), ("parsed only", ["--no-enrich"])):
                run_home = session.folder / f"{label.replace(' ', '-')}-{round_}"
                run_home.mkdir()
                sample = measure(session, [sys.executable, "-m",
                                           "logstack_dagster.streaming.run", *extra],
                                 session.env(run_home, topic), session.folder / "flow.out")
                counted = lake_check(run_home / "lake")
                if counted["rows"] + counted["quarantined"] != args.lines:
                    raise SystemExit(f"{label}: {counted} does not account for {args.lines}")
                runs[label].append(sample)
                print(f"  {label:12} {sample.wall_s:6.2f} s wall {sample.cpu_s:6.2f} s CPU",
                      file=sys.stderr)

    result = {"lines": args.lines, "addresses": args.addresses, "agents": args.agents,
              "repeat": args.repeat, "runs": {}}
    for label, samples in runs.items():
        result["runs"][label] = {
            "wall_s": statistics.median(s.wall_s for s in samples),
            "cpu_s": statistics.median(s.cpu_s for s in samples),
            "wall_s_all": [s.wall_s for s in samples], "cpu_s_all": [s.cpu_s for s in samples]}
    enriched, parsed = result["runs"]["enriched"], result["runs"]["parsed only"]
    # Share of throughput lost = 1 - (lines/s with) / (lines/s without).
    result["lost_by_cpu"] = round(1 - parsed["cpu_s"] / enriched["cpu_s"], 3)
    result["lost_by_wall"] = round(1 - parsed["wall_s"] / enriched["wall_s"], 3)

    (RESULTS_DIR / "enrich-flow.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS_DIR / "enrich-flow.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


def _markdown(result: dict) -> str:
    rows = "\n".join(
        f"| {label} | {r['wall_s']:.2f} | {result['lines'] / r['wall_s']:,.0f} | "
        f"{r['cpu_s']:.2f} | {result['lines'] / r['cpu_s']:,.0f} |"
        for label, r in result["runs"].items())
    def verdict(share: float) -> str:
        return "met" if share <= 0.25 else "NOT met"

    return (f"# Enrichment cost in the whole dataflow\n\n"
            f"`logstack flow` (one process, one worker, 2-partition topic) on "
            f"{result['lines']:,} lines, {result['addresses']:,} distinct addresses, "
            f"{result['agents']:,} distinct user agents; medians of {result['repeat']} "
            f"runs each, alternating.\n\n"
            f"| flow | wall s | lines/s | CPU s | lines per CPU s |\n|---|--:|--:|--:|--:|\n"
            f"{rows}\n\nThroughput (lines per second of wall time) lost to enrichment: "
            f"**{result['lost_by_wall']:.1%}** (goal: at most 25 %; "
            f"{verdict(result['lost_by_wall'])}). By CPU time, which is what counts when "
            f"every core is busy: **{result['lost_by_cpu']:.1%}** "
            f"({verdict(result['lost_by_cpu'])}).\n")


if __name__ == "__main__":
    sys.exit(main())
