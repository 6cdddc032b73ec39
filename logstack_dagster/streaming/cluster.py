"""The dataflow as several local processes of one Bytewax cluster.

Bytewax workers in one process share Python's global interpreter lock, so on a machine
with several cores the dataflow only scales with processes. The launcher picks one
loopback port per process, starts each member as
`python -m logstack_dagster.streaming.run --member I --addresses ...`, forwards SIGINT and
SIGTERM to them and waits for all. When one member fails it stops the others, since a
Timely cluster cannot go on without a member; what was committed stays, and the next run
resumes from there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from logstack_dagster.errors import LogstackError

log = logging.getLogger(__name__)

# Seconds a member gets to end after SIGTERM before it is killed.
STOP_GRACE = 10.0
_PR_SET_PDEATHSIG = 1


class MemberFailed(LogstackError):
    """A member process of the dataflow ended badly; `code` is the exit code to pass on."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def free_addresses(count: int) -> list[str]:
    """`count` loopback addresses whose ports were free a moment ago.

    The ports are closed again before the members bind them; another program could take
    one in between, in which case that member fails to start and the run fails cleanly.
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def member_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a member: the launcher's, less Dagster Pipes' channel, which only
    the launcher speaks on."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if not k.startswith("DAGSTER_PIPES_")}


def run_members(commands: Sequence[list[str]], env: dict[str, str],
                keep_fds: Sequence[int] = ()) -> None:
    """Start one process per command, wait for all, and raise MemberFailed if one fails.

    `keep_fds` stay open in the members (the ingest lock), so that the topic stays locked
    for as long as any member lives.
    """
    members: list[subprocess.Popen] = []
    received: list[int] = []

    def forward(signum, frame):
        received.append(signum)
        for member in members:
            if member.poll() is None:
                member.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for command in commands:
            # Members write their log to stderr; stdout is kept for the launcher's summary.
            members.append(subprocess.Popen(command, env=env, stdout=sys.stderr,
                                            pass_fds=tuple(keep_fds)))
        log.info("started %d dataflow processes: pids %s", len(members),
                 ", ".join(str(m.pid) for m in members))
        failed = _wait_all(members, received)
    finally:
        _stop(members)
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    if received:
        name = signal.Signals(received[0]).name
        raise MemberFailed(f"stopped by {name}; what was committed stays, the next run "
                           "resumes from there", 128 + received[0])
    if failed is not None:
        index, code = failed
        log.warning("dataflow process exit codes: %s",
                    ", ".join(f"{i}: {m.returncode}" for i, m in enumerate(members)))
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        raise MemberFailed(
            f"dataflow process {index} of {len(members)} {how}; stopped the others. What "
            "was committed stays, the next run resumes from there",
            code if code > 0 else 1)


def _wait_all(members: list[subprocess.Popen], received: list[int]) -> tuple[int, int] | None:
    """Wait until every member has ended, or one has failed: (its index, its exit code)."""
    while True:
        running = 0
        for index, member in enumerate(members):
            code = member.poll()
            if code is None:
                running += 1
            elif code != 0 and not received:
                return _first_cause(members, index, code)
        if running == 0:
            return None
        time.sleep(0.1)


def wait_for_earlier(addresses: Sequence[str], index: int, timeout: float = 30.0) -> None:
    """Wait until the members before `index` listen on their addresses, as the kernel's
    table of TCP sockets shows (a probing connection would be taken for a peer): a member
    connects to the earlier ones when its dataflow starts. Each member calls this after its
    own start-up, so the members start up side by side. Without /proc, return at once."""
    ports = {f":{int(address.rsplit(':', 1)[1]):04X}" for address in addresses[:index]}
    deadline = time.monotonic() + timeout
    while ports and time.monotonic() < deadline:
        tables = [Path(f"/proc/net/{name}") for name in ("tcp", "tcp6")]
        if not tables[0].exists():
            return
        table = "".join(t.read_text() for t in tables if t.exists())
        # Columns: sl, local address (hex ip:port), remote address, state (0A: LISTEN), ...
        for line in table.splitlines():
            columns = line.split()
            if len(columns) > 3 and columns[3] == "0A":
                ports.discard(columns[1][columns[1].rfind(":"):])
        if ports:
            time.sleep(0.02)


def _first_cause(members: list[subprocess.Popen], index: int, code: int) -> tuple[int, int]:
    """The failure to report: a member that dies takes its peers down with errors of
    their own, sometimes before its own end is seen, so wait a moment and prefer a member
    that a signal ended (the cause) to one that exited with an error (the consequence)."""
    time.sleep(0.5)
    for other, member in enumerate(members):
        if member.poll() is not None and member.returncode < 0:
            return other, member.returncode
    return index, code


def _stop(members: list[subprocess.Popen]) -> None:
    """End the members still running: SIGTERM, then SIGKILL after the grace period."""
    alive = [m for m in members if m.poll() is None]
    for member in alive:
        member.terminate()
    deadline = time.monotonic() + STOP_GRACE
    for member in alive:
        try:
            member.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            member.kill()
            member.wait()


def die_with_parent(parent_pid: int, signum: int = signal.SIGKILL) -> None:
    """Make this member end when the launcher `parent_pid` ends, however it ends.

    On Linux the kernel sends SIGKILL at the parent's death (strictly, when the thread that
    started this process ends: `run_members` runs on the launcher's main thread); elsewhere
    the broker watchdog's loop notices the new parent within a second (see `orphaned`).
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if orphaned(parent_pid):
        os._exit(1)


def orphaned(parent_pid: int | None) -> bool:
    return parent_pid is not None and os.getppid() != parent_pid
