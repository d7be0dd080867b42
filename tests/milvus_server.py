"""A real Milvus standalone server (PyPI `milvus`, its `milvus-server` wrapper) for the store
tests: started on first use, once per test session, and stopped at its end.

The wrapper takes `--proxy-port`, but quietly moves to the next free port when that one is
taken, so the port it wrote into its config is checked against the one asked for. Stopping
is SIGINT to the wrapper (it stops the server binary); the wrapper runs in its own process
group, which is killed if anything is left, so no server outlives the test run.

If the server cannot start, tests that need it fail in CI (CI=true: a missing store must not
pass silently) and skip with the reason elsewhere.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

START_TIMEOUT_S = 120.0  # ~9 s on an idle machine; far more on a busy, shared one


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MilvusServer:
    """One `milvus-server` process on 127.0.0.1:<port> with a fresh data folder."""

    def __init__(self, data: Path, port: int | None = None):
        self.data = Path(data)
        self.port = port or _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        log = open(self.data / "wrapper.log", "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from milvus import main; main()", "--data", str(self.data),
             "--proxy-port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "ETCD_CONFIG_PATH": str(self._etcd_config())})
        log.close()
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"milvus-server exited with {self.process.returncode}: "
                                   f"{self._log_tail()}")
            self._check_port()
            try:
                self._answers()
                return
            except Exception as exc:  # noqa: BLE001 - not up yet: retry until the deadline
                last_error = exc
                time.sleep(0.5)
        raise TimeoutError(f"Milvus did not answer at {self.uri} within {timeout_s:.0f} s "
                           f"({last_error}); {self._log_tail()}")

    def _etcd_config(self) -> Path:
        """Free ports for the embedded etcd, which the wrapper leaves at 2379/2380: two servers
        on one machine (the session's and a test's own) would clash there. Milvus reads
        etcd.config.path from $ETCD_CONFIG_PATH."""
        client, peer = (f"http://127.0.0.1:{_free_port()}" for _ in range(2))
        path = self.data / "embed-etcd.yaml"
        path.write_text(yaml.safe_dump({
            "name": "default", "listen-client-urls": client, "advertise-client-urls": client,
            "listen-peer-urls": peer, "initial-advertise-peer-urls": peer,
            "initial-cluster": f"default={peer}"}), encoding="utf-8")
        return path

    def _check_port(self) -> None:
        """The wrapper writes its config before it starts the server: is the port ours?"""
        try:
            config = (self.data / "configs" / "milvus.yaml").read_text(encoding="utf-8")
        except OSError:
            return  # not written yet
        try:
            port = int(yaml.safe_load(config)["proxy"]["port"])
        except (yaml.YAMLError, KeyError, TypeError, ValueError):
            return  # half written
        if port != self.port:
            raise RuntimeError(f"milvus-server moved from port {self.port} to {port} (was "
                               f"{self.port} taken?)")

    def _answers(self) -> None:
        from pymilvus import MilvusClient

        client = MilvusClient(uri=self.uri, timeout=2)
        try:
            client.list_collections()
        finally:
            client.close()

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "log: " + (self.data / "wrapper.log").read_text(errors="replace")[-500:]
        return "no log"

    def stop(self) -> None:
        if self.process is None:
            return
        group = self.process.pid  # its own session: the group id is the wrapper's pid
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)  # anything the wrapper left behind
        self.process = None


def unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"the Milvus server is needed in CI but did not start: {reason}")
    pytest.skip(f"no Milvus server here: {reason}")


@pytest.fixture(scope="session")
def milvus_server_uri(tmp_path_factory):
    """Lazy: a callable starting the session's server on first call (so runs that never ask
    for it pay nothing), returning its URI; the server stops when the session ends."""
    state: dict = {}

    def start() -> str:
        if "error" in state:
            unavailable(state["error"])
        if "server" not in state:
            try:
                import milvus  # noqa: F401
                import pymilvus  # noqa: F401
            except ImportError as exc:
                state["error"] = f"{exc.name} not installed (pip install -e '.[dev]')"
                unavailable(state["error"])
            server = MilvusServer(tmp_path_factory.mktemp("milvus-server"))
            try:
                server.start()
            except Exception as exc:  # noqa: BLE001 - any failure: say why, once
                server.stop()
                state["error"] = str(exc)
                unavailable(state["error"])
            state["server"] = server
        return state["server"].uri

    yield start
    if "server" in state:
        state["server"].stop()


_collection_names = itertools.count()


@pytest.fixture
def milvus_target(milvus_server_uri):
    """A fresh collection address, milvus://HOST:PORT/NAME, on the session's Milvus server
    (its collections dropped afterwards)."""
    from crossmodal.collection.milvus_collection import MilvusCollection

    host = milvus_server_uri().removeprefix("http://")
    target = f"milvus://{host}/c{os.getpid()}_{next(_collection_names)}"
    if MilvusCollection.exists(target):  # left by an earlier run on a reused server
        MilvusCollection.drop(target)
    yield target
    if MilvusCollection.exists(target):
        MilvusCollection.drop(target)
