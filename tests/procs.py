"""Run floatsrv as a real separate process (`python -m floatsrv serve`) for restart, crash and SDK tests."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import example_dict, floatsrv_cli
from tests.licensing import sign_licenses


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Every server process a test started, so the suite can reap those a failing test left running (conftest).
STARTED: list[ServerProcess] = []


def reap_leftovers(since: int) -> int:
    """Kill the servers started after the first `since` that still run (a test's own, not its module's
    fixtures', which were started before it); how many there were."""
    left = {id(s): s for s in STARTED[since:] if s.proc is not None and s.proc.poll() is None}
    for server in left.values():
        server.kill()
    del STARTED[since:]
    return len(left)


class ServerProcess:
    """One floatsrv process on a free port; `start()` waits until it answers, `stop()` sends SIGTERM."""

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        *,
        signed: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        """`config`'s inline licenses are moved into a demo-signed file in `workdir` (`signed=False`: kept).
        `env`: the environment of the server and its admin commands (e.g. a vendor build's PYTHONPATH)."""
        self.workdir = workdir
        self.env = env
        self.data_dir = workdir / "data"
        self.config_path = workdir / "floatsrv.yaml"
        self.log_path = workdir / "server.log"
        data = config if config is not None else example_dict()
        if signed:
            sign_licenses(data, workdir)
        self.config_path.write_text(yaml.safe_dump(data))
        self.port = free_port()
        self.ssl_context = ssl_context
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}" if self.ssl_context else f"http://127.0.0.1:{self.port}"

    @property
    def domain(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "floatsrv",
                "serve",
                "--config",
                str(self.config_path),
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**(self.env or os.environ), "PYTHONUNBUFFERED": "1"},
            cwd=self.workdir,  # not the checkout: `-m floatsrv` must find the build on PYTHONPATH
        )
        log.close()
        STARTED.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"floatsrv exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1, context=self.ssl_context) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"floatsrv did not start:\n{self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_lines(self) -> list[dict[str, Any]]:
        """The server's log so far, one JSON object per line (the format it logs in off a TTY)."""
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """An admin command against this server's config and data dir."""
        return floatsrv_cli(
            *args, "--config", str(self.config_path), "--data-dir", str(self.data_dir), env=self.env, cwd=self.workdir
        )

    def token(self, username: str = "admin", password: str = "admin-password") -> str:
        auth = base64.b64encode(f"{username}:{password}".encode()).decode()
        status, body = self.request("GET", "/auth", headers={"Authorization": f"Basic {auth}"})
        assert status == 200, body
        token: str = body["token"]
        return token

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.ssl_context) as resp:
                raw, status, ctype = resp.read(), resp.status, resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raw, status, ctype = exc.read(), exc.code, exc.headers.get("Content-Type", "")
        return status, (json.loads(raw) if "json" in ctype else raw.decode())
