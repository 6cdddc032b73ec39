"""A `dagster dev` of a test's own, on 127.0.0.1, and the GraphQL calls the tests make to it.

The server runs in a process group of its own, so stopping it also stops the daemon, the
code server and any run worker it started, even when a test fails half-way.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

REPO = Path(__file__).resolve().parent.parent
LOCATION = "logstack"
# `Definitions` objects are served as a repository of this name.
REPOSITORY = "__repository__"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}

T = TypeVar("T")


class ServerError(AssertionError):
    """The server, or something it ran, did not do what the test waited for."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float,
             every: float = 1.0) -> T:
    """Call `probe` until it returns something other than None; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise ServerError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class DagsterServer:
    """A running `dagster dev`: its address, its log, and GraphQL helpers."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path):
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def graphql(self, query: str, **variables) -> dict:
        """The `data` of one GraphQL request; GraphQL errors raise ServerError."""
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        if answer.get("errors"):
            raise ServerError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def tail(self, lines: int = 40) -> str:
        """The end of the server's own output, for failure messages."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_until_loaded(self, timeout: float = 60.0) -> None:
        """Wait for the webserver to answer and the code location to load without error."""
        def loaded():
            if self.process.poll() is not None:
                raise ServerError(f"dagster dev exited early:\n{self.tail()}")
            try:
                data = self.graphql(_WORKSPACE)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return None
            entries = data["workspaceOrError"].get("locationEntries", [])
            entry = next((e for e in entries if e["name"] == LOCATION), None)
            if entry is None or entry["loadStatus"] != "LOADED":
                return None
            location = entry["locationOrLoadError"]
            if location["__typename"] == "PythonError":
                raise ServerError(f"code location failed to load: {location['message']}")
            return True

        wait_for("the webserver and the code location", loaded, timeout)

    def start_sensor(self, name: str) -> str:
        """Start a sensor (a no-op when it runs already); return its status after the call."""
        data = self.graphql(_START_SENSOR, selector={
            "repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
            "sensorName": name})
        answer = data["startSensor"]
        if answer["__typename"] != "Sensor":
            raise ServerError(f"starting sensor {name!r}: {answer}")
        return answer["sensorState"]["status"]

    def sensor_ticks(self, name: str) -> list[dict]:
        """A sensor's ticks, newest first: status, skip reason, error, run ids."""
        data = self.graphql(_SENSOR_TICKS, selector={
            "repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
            "sensorName": name})
        return data["sensorOrError"]["sensorState"]["ticks"]

    def runs(self, job: str | None = None, tags: dict[str, str] | None = None) -> list[dict]:
        """Runs, newest first, of `job` and/or carrying all of `tags`."""
        runs_filter: dict = {}
        if job:
            runs_filter["pipelineName"] = job
        if tags:
            runs_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        answer = self.graphql(_RUNS, filter=runs_filter)["runsOrError"]
        if answer["__typename"] != "Runs":
            raise ServerError(f"listing runs: {answer}")
        for run in answer["results"]:
            run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
        return answer["results"]

    def wait_for_runs(self, what: str, find: Callable[[], list[dict]],
                      timeout: float, succeed: bool = True) -> list[dict]:
        """Wait until `find` returns runs and all of them have finished.

        With `succeed`, every one of them must have succeeded.
        """
        def finished():
            runs = find()
            if runs and all(r["status"] in FINISHED for r in runs):
                return runs
            return None

        runs = wait_for(what, finished, timeout)
        failed = [r for r in runs if r["status"] != "SUCCESS" and succeed]
        if failed:
            raise ServerError(f"{what}: run {failed[0]['runId']} ended {failed[0]['status']}:"
                              f"\n{self.run_failure(failed[0]['runId'])}")
        return runs

    def launch_run(self, job: str) -> str:
        """Submit a run of `job` to the run queue; return its id."""
        answer = self.graphql(_LAUNCH_RUN, params={"selector": {
            "repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
            "jobName": job}})["launchRun"]
        if answer["__typename"] != "LaunchRunSuccess":
            raise ServerError(f"launching a run of {job}: {answer}")
        return answer["run"]["runId"]

    def reexecute(self, run_id: str, strategy: str = "FROM_FAILURE") -> str:
        """Re-execute run `run_id` (`FROM_FAILURE` or `ALL_STEPS`); return the new run's id."""
        answer = self.graphql(_REEXECUTE, params={
            "parentRunId": run_id, "strategy": strategy})["launchRunReexecution"]
        if answer["__typename"] != "LaunchRunSuccess":
            raise ServerError(f"re-executing run {run_id}: {answer}")
        return answer["run"]["runId"]

    def run_failure(self, run_id: str) -> str:
        """The messages of a run's failure events, to say why it failed."""
        events = self.graphql(_RUN_EVENTS, runId=run_id)["logsForRun"].get("events", [])
        return "\n".join(e["message"] for e in events
                         if e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent"))

    def launch_asset_backfill(self, assets: list[str], partitions: list[str],
                              run_config: dict | None = None) -> str:
        """Launch a backfill of `partitions` of `assets`; return its id."""
        params = {"assetSelection": [{"path": [a]} for a in assets],
                  "partitionNames": partitions}
        if run_config is not None:
            params["runConfigData"] = run_config
        answer = self.graphql(_LAUNCH_BACKFILL, params=params)["launchPartitionBackfill"]
        if answer["__typename"] != "LaunchBackfillSuccess":
            raise ServerError(f"launching the backfill: {answer}")
        return answer["backfillId"]

    def backfill_status(self, backfill_id: str) -> str:
        answer = self.graphql(_BACKFILL, id=backfill_id)["partitionBackfillOrError"]
        return answer["status"]

    def check_executions(self, asset: str, check: str) -> list[dict]:
        """Executions of an asset check, newest first: status, partition, run."""
        return self.graphql(_CHECK_EXECUTIONS, key={"path": [asset]},
                            check=check)["assetCheckExecutions"]


@contextmanager
def dagster_dev(dagster_home: Path, env: dict[str, str], log: Path) -> Iterator[DagsterServer]:
    """Run `dagster dev` on the repository's workspace.yaml with a fresh `dagster_home`.

    The repository's dagster.yaml is copied into `dagster_home`, as `make dev` does.
    """
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    port = free_port()
    command = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml",
               "-h", "127.0.0.1", "-p", str(port)]
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, cwd=REPO, env={**env, "DAGSTER_HOME": str(dagster_home)},
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    server = DagsterServer(process, port, log)
    try:
        server.wait_until_loaded()
        yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen, grace: float = 20.0) -> None:
    """Ask the whole process group to stop, then make sure it has."""
    group = process.pid  # the group leader, as started with start_new_session
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; children that outlived it still belong to the group.
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


_WORKSPACE = """
query {
  workspaceOrError {
    ... on Workspace {
      locationEntries {
        name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}"""

_START_SENSOR = """
mutation ($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
    ... on SensorNotFoundError { message }
  }
}"""

_SENSOR_TICKS = """
query ($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor {
      sensorState { ticks(limit: 20) { status skipReason runIds error { message } } }
    }
  }
}"""

_RUNS = """
query ($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs {
      results { runId jobName status startTime endTime parentRunId tags { key value } }
    }
    ... on PythonError { message }
  }
}"""

_RUN_EVENTS = """
query ($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection { events { __typename ... on MessageEvent { message } } }
  }
}"""

_LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""

_LAUNCH_RUN = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}"""

_REEXECUTE = """
mutation ($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}"""

_BACKFILL = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status }
  }
}"""

_CHECK_EXECUTIONS = """
query ($key: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 50) {
    runId status partition
  }
}"""
