#!/usr/bin/env python3
"""floatsrv benchmark: throughput and latency beside a bare aiohttp JSON echo measured in the same run.

    python3 dev.py bench                 # everything (about 4 minutes; the scale data takes a while to build)
    python3 dev.py bench --quick         # shorter runs, no scale phase

The server runs pinned to CPU 0 and the load generator (wrk, with Lua scripts) to CPU 1, each on its own
core. Phases:
  1. ceiling: bare aiohttp echo handler (parse JSON, return JSON), same load.
  2. floatsrv, group commit, small database: register heartbeats, add_feature_consumption, /v1 usage events
     and checks, GET /api/v4/license; with auth on, durable commits (synchronous=full), info logging on.
  3. the naive variant (storage.max_batch_units: 1, one commit per request) for the durable writes.
  4. scale: 10k licenses, 100k held registrations, 1M stored usage events: start-up time, then phase 2 again.
Prints a table with ratios and the targets, and writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LUA = HERE / "lua" / "post.lua"
CONNECTIONS = 64

BENCH_LICENSE = {
    "id": 1, "product": "bench", "license_type": "consumption", "floating_users": 1000, "floating_timeout": 30,
    "max_consumptions": 0, "allow_unlimited_consumptions": True,
    "features": [
        {"code": "meter", "feature_type": "consumption", "allow_unlimited_consumptions": True,
         "reset_consumption": True, "consumption_period": "monthly"},
        {"code": "seat", "floating_users": 100},
    ],
}

SCENARIOS: list[dict[str, Any]] = [
    {"name": "register heartbeat", "path": "/api/v4/register", "body": '{"product":"bench","user":"u%d"}',
     "modulo": CONNECTIONS, "target": True},
    {"name": "add_feature_consumption", "path": "/api/v4/add_feature_consumption",
     "body": '{"product":"bench","user":"u%d","feature":"meter","consumptions":1}', "modulo": CONNECTIONS,
     "target": True},
    {"name": "usage event (/v1)", "path": "/v1/usage/events",
     "body": '{"event_id":"e%t-%d","product":"bench","feature":"meter","quantity":"1.5"}'},
    {"name": "usage check (/v1)", "path": "/v1/usage/check",
     "body": '{"product":"bench","feature":"meter","quantity":"2"}'},
    {"name": "license list", "path": "/api/v4/license?product=bench", "body": "", "method": "GET"},
]


def pin(cpu: str) -> list[str]:
    return ["taskset", "-c", cpu] if shutil.which("taskset") and (os.cpu_count() or 1) >= 2 else []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, path: str, timeout: float = 120) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
                return time.monotonic() - start
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"server on {port} not ready after {timeout} s")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wrk(port: int, scenario: dict[str, Any], seconds: int, token: str | None) -> dict[str, Any]:
    env = {**os.environ, "BODY": scenario.get("body", ""), "MODULO": str(scenario.get("modulo", 0)),
           "METHOD": scenario.get("method", "POST")}
    if token:
        env["TOKEN"] = token
    command = [*pin("1"), "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(LUA),
               f"http://127.0.0.1:{port}{scenario['path']}"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    data: dict[str, Any] = json.loads(next(line[5:] for line in out.splitlines() if line.startswith("JSON ")))
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    return data


class Server:
    def __init__(self, command: list[str], port: int, ready: str, log: Path) -> None:
        self.port = port
        self.log = log.open("wb")
        started = time.monotonic()
        self.proc = subprocess.Popen([*pin("0"), *command], stdout=self.log, stderr=subprocess.STDOUT)
        self.startup = wait_ready(port, ready) if ready else 0.0
        self.startup = time.monotonic() - started

    def stop(self) -> float:
        rss = peak_rss_mib(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()
        return rss


def floatsrv(workdir: Path, name: str, licenses: list[dict[str, Any]], batch: int = 256) -> tuple[Path, Path]:
    config = {
        "server": {"host": "127.0.0.1", "port": 8080},
        "storage": {"data_dir": str(workdir / f"data-{name}"), "synchronous": "full", "max_batch_units": batch},
        "log": {"level": "info", "format": "json"},
        "auth": {"enabled": True, "users": [{"username": "bench", "password": "bench-password-1", "role": "admin"}]},
        "seats": {"sweep_interval_seconds": 30},
        "licenses": licenses,
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, workdir / f"data-{name}"


def start_floatsrv(config: Path, workdir: Path, name: str, data_dir: Path | None = None) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "floatsrv", "serve", "--config", str(config), "--port", str(port)]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    return Server(command, port, "/", workdir / f"{name}.log")


def login(port: int) -> str:
    auth = base64.b64encode(b"bench:bench-password-1").decode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/auth", headers={"Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        token: str = json.load(resp)["token"]
        return token


def run_scenarios(server: Server, scenarios: list[dict[str, Any]], seconds: int) -> dict[str, dict[str, Any]]:
    token = login(server.port)
    results = {}
    for scenario in scenarios:
        wrk(server.port, {**scenario, "modulo": scenario.get("modulo", 0)}, 1, token)  # warm-up
        results[scenario["name"]] = wrk(server.port, scenario, seconds, token)
    return results


def populate(data_dir: Path, licenses: int, registrations: int, events: int) -> None:
    """Fill a database the server created: held registrations and stored usage events (direct SQL, fast)."""
    import sqlite3

    now = int(time.time() * 1e6)
    conn = sqlite3.connect(data_dir / "floatsrv.db", isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    per_license = registrations // licenses
    conn.executemany(
        "INSERT INTO seats (license_id, feature, user, slot, registered_at, heartbeat_at, expires_at)"
        " VALUES (?, '', ?, ?, ?, ?, ?)",
        ((1000 + i // per_license, f"r{i}", i % per_license + 1, now, now, now + 86_400_000_000 * 365)
         for i in range(registrations)))
    conn.executemany(
        "INSERT INTO consumption_counters (license_id, feature, period_start, updated_at) VALUES (?, 'meter', 0, ?)",
        ((1000 + i, now) for i in range(licenses)))
    conn.executemany(
        "INSERT INTO usage_events (license_id, feature, period_start, quantity_milli, source, received_at,"
        " occurred_at) VALUES (?, 'meter', 0, 1000, 'bench', ?, ?)",
        ((1000 + i % licenses, now - i, now - i) for i in range(events)))
    conn.execute("COMMIT")
    conn.close()


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 s runs, no scale phase")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--no-scale", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench: needs wrk (Debian/Ubuntu: apt-get install wrk)", file=sys.stderr)
        return 2
    seconds = 5 if args.quick else args.seconds
    workdir = Path(tempfile.mkdtemp(prefix="floatsrv-bench-"))
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                               "seconds": seconds, "connections": CONNECTIONS}
    try:
        print(f"bench: {seconds} s per run, {CONNECTIONS} connections, server on CPU 0, wrk on CPU 1", flush=True)
        echo_port = free_port()
        echo = Server([sys.executable, str(HERE / "echo.py"), str(echo_port)], echo_port, "/echo",
                      workdir / "echo.log")
        echo_body = {"name": "echo", "path": "/echo", "body": SCENARIOS[0]["body"], "modulo": CONNECTIONS}
        wrk(echo_port, echo_body, 1, None)
        results["echo"] = wrk(echo_port, echo_body, seconds, None)
        results["echo"]["rss_mib"] = echo.stop()

        config, _ = floatsrv(workdir, "small", [BENCH_LICENSE])
        server = start_floatsrv(config, workdir, "small")
        results["small"] = run_scenarios(server, SCENARIOS, seconds)
        results["small_rss_mib"] = server.stop()
        results["small_log_lines"] = sum(1 for _ in (workdir / "small.log").open("rb"))

        config, _ = floatsrv(workdir, "naive", [BENCH_LICENSE], batch=1)
        server = start_floatsrv(config, workdir, "naive")
        results["naive"] = run_scenarios(server, [s for s in SCENARIOS if s.get("target")], seconds)
        server.stop()

        if not (args.quick or args.no_scale):
            many = [BENCH_LICENSE] + [
                {"id": 1000 + i, "product": f"p{i}", "license_type": "consumption", "floating_users": 20,
                 "allow_unlimited_consumptions": True,
                 "features": [{"code": "meter", "feature_type": "consumption", "allow_unlimited_consumptions": True}]}
                for i in range(10_000)]
            config, data_dir = floatsrv(workdir, "scale", many)
            first = start_floatsrv(config, workdir, "scale-create")
            first.stop()
            print("bench: building the scale database (100k registrations, 1M usage events)", flush=True)
            populate(data_dir, 10_000, 100_000, 1_000_000)
            server = start_floatsrv(config, workdir, "scale")
            results["scale_startup_s"] = server.startup
            results["scale_db_mib"] = (data_dir / "floatsrv.db").stat().st_size / 2**20
            results["scale"] = run_scenarios(server, SCENARIOS, seconds)
            results["scale_rss_mib"] = server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    return 0


def report(results: dict[str, Any]) -> None:
    echo = results["echo"]
    rows = [("scenario", "phase", "req/s", "p50 ms", "p99 ms", "x echo", "x naive", "errors")]
    rows.append(("bare aiohttp echo (ceiling)", "-", f"{echo['rps']:.0f}", f"{echo['p50_us'] / 1000:.2f}",
                 f"{echo['p99_us'] / 1000:.2f}", "1.00", "", str(echo["errors"] + echo["non2xx"])))
    for phase in ("small", "naive", "scale"):
        for name, data in results.get(phase, {}).items():
            naive = results.get("naive", {}).get(name)
            rows.append((name, phase, f"{data['rps']:.0f}", f"{data['p50_us'] / 1000:.2f}", f"{data['p99_us'] / 1000:.2f}",
                         f"{data['rps'] / echo['rps']:.2f}",
                         f"{data['rps'] / naive['rps']:.1f}" if naive and phase != "naive" else "",
                         str(data["errors"] + data["non2xx"])))
    print()
    print(table(rows))
    print()
    print(f"peak RSS: echo {echo['rss_mib']:.0f} MiB, floatsrv small {results['small_rss_mib']:.0f} MiB"
          + (f", scale {results['scale_rss_mib']:.0f} MiB" if "scale_rss_mib" in results else ""))
    print(f"log lines written in the small phase (info level, one per request): {results['small_log_lines']}")
    checks = []
    for name in ("register heartbeat", "add_feature_consumption"):
        data, naive = results["small"][name], results["naive"][name]
        checks.append((f"{name}: >= 0.5 x echo", data["rps"] / echo["rps"] >= 0.5, f"{data['rps'] / echo['rps']:.2f}"))
        checks.append((f"{name}: p99 <= 25 ms", data["p99_us"] <= 25_000, f"{data['p99_us'] / 1000:.1f} ms"))
        checks.append((f"{name}: >= 2 x naive", data["rps"] / naive["rps"] >= 2, f"{data['rps'] / naive['rps']:.1f}"))
    if "scale" in results:
        checks.append(("scale start-up < 2 s", results["scale_startup_s"] < 2, f"{results['scale_startup_s']:.2f} s"))
        for name, small in results["small"].items():
            scaled = results["scale"][name]
            drop = 1 - scaled["rps"] / small["rps"]
            checks.append((f"scale: {name} within 10%", drop <= 0.10, f"{-drop * 100:+.1f}% req/s, p99 "
                           f"{small['p99_us'] / 1000:.1f} -> {scaled['p99_us'] / 1000:.1f} ms"))
    width = max(len(c[0]) for c in checks)
    for label, ok, value in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {label.ljust(width)}  {value}")
    results["checks"] = [{"check": c[0], "pass": c[1], "value": c[2]} for c in checks]


if __name__ == "__main__":
    sys.exit(main())
