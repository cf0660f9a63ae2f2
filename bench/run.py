#!/usr/bin/env python3
"""floatsrv benchmark: throughput and latency beside a bare aiohttp JSON echo measured in the same run.

    python3 dev.py bench                 # everything (about 10 minutes)
    python3 dev.py bench --quick         # one round of 3 s runs, no scale phase
    python3 dev.py bench --startup       # only the start-up time of admin commands (bench/startup.py)

Servers run pinned to CPU 0 and the load generator (wrk, with a Lua script) to CPU 1. Servers:
  echo   the ceiling: a bare aiohttp handler that parses a JSON body and returns JSON.
  small  floatsrv with group commit on a fresh database: auth on, durable commits (synchronous=full),
         info logging on (one JSON line per request).
  naive  the same with storage.max_batch_units: 1, i.e. one commit per request (the baseline to beat).
  scale  floatsrv on 10k licenses, 100k held registrations, 100k past seat intervals of one license and 1M
         stored usage events (start-up timed 3x; the history reports of that license timed 3x).
  policy the small server with a usage policy in force on its license and feature (register, consumption).
  floor  bench/floor.py: the least work a durable, authenticated heartbeat or consumption needs on this
         stack (a reference for the two target scenarios, not a license server).
Scenarios: register heartbeats, add_feature_consumption, /v1 usage events and checks, GET /api/v4/license.
All servers stay up; in each round every run of a floatsrv server follows a run of the echo, figures are
compared as ratios to that echo run, and the order of the servers rotates from round to round. Medians
over rounds are printed with the targets, and everything is written to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
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
    "id": 1,
    "product": "bench",
    "license_type": "consumption",
    "floating_users": 1000,
    "floating_timeout": 30,
    "max_consumptions": 0,
    "allow_unlimited_consumptions": True,
    "features": [
        {
            "code": "meter",
            "feature_type": "consumption",
            "allow_unlimited_consumptions": True,
            "reset_consumption": True,
            "consumption_period": "monthly",
        },
        {"code": "seat", "floating_users": 100},
    ],
}

# A usage policy on the bench license and its floating feature: every keyword, none refusing the bench users
# (u0..u63), so the runs measure what judging costs.
POLICY = {
    "groups": {
        "design": {"users": ["alice", "bob"], "hosts": ["cad-*"], "addresses": ["10.1.0.0/16"], "logins": ["cad"]},
        "interns": {"users": ["intern*"]},
    },
    "rules": [
        {
            "license": 1,
            "reserve": [{"count": 100, "for": "design"}],
            "max": [{"count": 10, "for": "interns"}],
            "exclude": ["host:kiosk-*", "user:mallory"],
            "timeout_minutes": 30,
        },
        {
            "license": 1,
            "feature": "seat",
            "reserve": [{"count": 10, "for": "design"}],
            "include": ["user:u*", "design"],
        },
    ],
}

SCENARIOS: list[dict[str, Any]] = [
    {
        "name": "register heartbeat",
        "path": "/api/v4/register",
        "body": '{"product":"bench","user":"u%d"}',
        "modulo": CONNECTIONS,
        "target": True,
        "floor": True,
    },
    {
        "name": "add_feature_consumption",
        "path": "/api/v4/add_feature_consumption",
        "body": '{"product":"bench","user":"u%d","feature":"meter","consumptions":1}',
        "modulo": CONNECTIONS,
        "target": True,
        "floor": True,
    },
    {
        "name": "usage event (/v1)",
        "path": "/v1/usage/events",
        "body": '{"event_id":"e%t-%d","product":"bench","feature":"meter","quantity":"1.5"}',
    },
    {
        "name": "usage check (/v1)",
        "path": "/v1/usage/check",
        "body": '{"product":"bench","feature":"meter","quantity":"2"}',
    },
    {"name": "license list", "path": "/api/v4/license?product=bench", "body": "", "method": "GET"},
    # A new seat judged by the policy at every other request (a heartbeat never is): each of 16 connections,
    # one per wrk thread so its requests go strictly in turn, registers its own user and gives the seat back.
    # Only in the policy pairs (small against policy), where what judging a new seat costs shows.
    {
        "name": "register a new seat, unregister it",
        "path": "/api/v4/register",
        "alternate": "/api/v4/unregister",
        "body": '{"product":"bench","user":"c%t"}',
        "threads": 16,
        "connections": 16,
        "policy_only": True,
    },
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


def wrk(
    port: int, scenario: dict[str, Any], seconds: int, token: str | None, connections: int = CONNECTIONS
) -> dict[str, Any]:
    env = {
        **os.environ,
        "BODY": scenario.get("body", ""),
        "MODULO": str(scenario.get("modulo", 0)),
        "METHOD": scenario.get("method", "POST"),
    }
    if scenario.get("alternate"):
        env["ALTERNATE"] = scenario["alternate"]
    if token:
        env["TOKEN"] = token
    command = [
        *pin("1"),
        "wrk",
        f"-t{scenario.get('threads', 1)}",
        f"-c{scenario.get('connections', connections)}",
        f"-d{seconds}s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}{scenario['path']}",
    ]
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


def license_file(path: Path, licenses: list[dict[str, Any]]) -> Path:
    """The licenses as a license file signed with the repository's demo key (the repository build trusts it):
    floatsrv serves them through the signed path, as every site does."""
    from datetime import UTC, datetime

    from floatsrv.entitlements import issue
    from floatsrv.signing import read_private_key

    key = read_private_key(ROOT / "demo" / "DEMO-ONLY-vendor-private-key.pem")
    payload = issue.payload_bytes(
        issue.validated(licenses),
        binding={"unbound": True},
        issued_at=datetime(2025, 1, 1, tzinfo=UTC),
        series="bench",
        file_id=f"bench-{path.stem}",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(issue.issue(payload, key))
    return path


def floatsrv(
    workdir: Path, name: str, licenses: list[dict[str, Any]], batch: int = 256, policy: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 8080},
        "storage": {"data_dir": str(workdir / f"data-{name}"), "synchronous": "full", "max_batch_units": batch},
        "log": {"level": "info", "format": "json"},
        "auth": {"enabled": True, "users": [{"username": "bench", "password": "bench-password-1", "role": "admin"}]},
        "seats": {"sweep_interval_seconds": 30},
        "license_files": [str(license_file(workdir / f"{name}-licenses" / f"{name}.lic", licenses))],
    }
    if policy is not None:
        config["policy"] = policy
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
        (
            (1000 + i // per_license, f"r{i}", i % per_license + 1, now, now, now + 86_400_000_000 * 365)
            for i in range(registrations)
        ),
    )
    # Seat history: 100k ended seats of license 1000 over the last 30 days (the concurrency report's worst case).
    month = 30 * 86_400_000_000
    conn.executemany(
        "INSERT INTO seats (license_id, feature, user, slot, registered_at, heartbeat_at, expires_at, ended_at,"
        " end_reason) VALUES (1000, '', ?, ?, ?, ?, ?, ?, 'released')",
        (
            (f"h{i}", i % 20 + 1, start, start, start + 1_800_000_000, start + 1_200_000_000)
            for i in range(100_000)
            for start in (now - month + i * (month // 100_000),)
        ),
    )
    conn.executemany(
        "INSERT INTO consumption_counters (license_id, feature, period_start, updated_at) VALUES (?, 'meter', 0, ?)",
        ((1000 + i, now) for i in range(licenses)),
    )
    conn.executemany(
        "INSERT INTO usage_events (license_id, feature, period_start, quantity_milli, source, received_at,"
        " occurred_at) VALUES (?, 'meter', 0, 1000, 'bench', ?, ?)",
        ((1000 + i % licenses, now - i, now - i) for i in range(events)),
    )
    conn.execute("COMMIT")
    conn.close()


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def start_scale(workdir: Path) -> tuple[Path, Path, list[float]]:
    """Build the scale database, then time three start-ups of a server on it (returns config, data, times)."""
    many = [BENCH_LICENSE] + [
        {
            "id": 1000 + i,
            "product": f"p{i}",
            "license_type": "consumption",
            "floating_users": 20,
            "allow_unlimited_consumptions": True,
            "features": [{"code": "meter", "feature_type": "consumption", "allow_unlimited_consumptions": True}],
        }
        for i in range(10_000)
    ]
    config, data_dir = floatsrv(workdir, "scale", many)
    start_floatsrv(config, workdir, "scale-create").stop()
    print(
        "bench: building the scale database (10k licenses, 100k registrations, 100k seat intervals, 1M usage events)",
        flush=True,
    )
    populate(data_dir, 10_000, 100_000, 1_000_000)
    startups = []
    for _ in range(3):
        server = start_floatsrv(config, workdir, "scale-startup")
        startups.append(server.startup)
        server.stop()
    return config, data_dir, startups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round of 3 s runs, no scale phase")
    parser.add_argument("--seconds", type=int, default=5, help="length of each measured run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--no-scale", action="store_true")
    parser.add_argument(
        "--login-flood", action="store_true", help="only heartbeat latency during a flood of failed logins"
    )
    parser.add_argument("--startup", action="store_true", help="only the start-up time of admin commands")
    parser.add_argument(
        "--postgresql", action="store_true", help="only PostgreSQL (1 and 2 nodes) against SQLite (postgresql.py)"
    )
    args = parser.parse_args()
    if args.postgresql:
        from postgresql import main as pg_main

        return pg_main(
            ["--seconds", str(3 if args.quick else args.seconds), "--rounds", str(1 if args.quick else args.rounds)]
        )
    if args.startup:
        from startup import main as startup_main

        return startup_main([])
    if args.login_flood:
        from login_flood import main as flood_main

        return flood_main()
    if not shutil.which("wrk"):
        print("bench: needs wrk (Debian/Ubuntu: apt-get install wrk)", file=sys.stderr)
        return 2
    seconds, rounds = (3, 1) if args.quick else (args.seconds, args.rounds)
    scale = not (args.quick or args.no_scale)
    workdir = Path(tempfile.mkdtemp(prefix="floatsrv-bench-"))
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "seconds": seconds,
        "rounds": rounds,
        "connections": CONNECTIONS,
    }
    servers: dict[str, Server] = {}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        "echo": {},
        "small": {},
        "naive": {},
        "policy": {},
        "scale": {},
        "floor": {},
    }
    try:
        print(
            f"bench: {rounds} round(s) of {seconds} s runs, {CONNECTIONS} connections, server on CPU 0, wrk on CPU 1",
            flush=True,
        )
        if scale:
            scale_config, scale_dir, startups = start_scale(workdir)
            results["scale_startup_s"] = startups
            results["scale_db_mib"] = (scale_dir / "floatsrv.db").stat().st_size / 2**20
        echo_port = free_port()
        servers["echo"] = Server(
            [sys.executable, str(HERE / "echo.py"), str(echo_port)], echo_port, "/echo", workdir / "echo.log"
        )
        config, _ = floatsrv(workdir, "small", [BENCH_LICENSE])
        servers["small"] = start_floatsrv(config, workdir, "small")
        config, _ = floatsrv(workdir, "naive", [BENCH_LICENSE], batch=1)
        servers["naive"] = start_floatsrv(config, workdir, "naive")
        config, _ = floatsrv(workdir, "policy", [BENCH_LICENSE], policy=POLICY)
        servers["policy"] = start_floatsrv(config, workdir, "policy")
        if scale:
            servers["scale"] = start_floatsrv(scale_config, workdir, "scale")
        tokens = {name: login(server.port) for name, server in servers.items() if name != "echo"}
        if scale:
            results["reports_s"] = time_reports(servers["scale"].port, tokens["scale"])
            results["console_s"] = time_console(servers["scale"].port, tokens["scale"])
        floor_port = free_port()
        servers["floor"] = Server(
            [sys.executable, str(HERE / "floor.py"), str(floor_port), str(workdir / "data-floor")],
            floor_port,
            "/",
            workdir / "floor.log",
        )
        tokens["floor"] = "floor-token"
        echo = {"name": "echo", "path": "/echo", "body": SCENARIOS[0]["body"], "modulo": CONNECTIONS}
        phases = [phase for phase in ("small", "naive", "scale", "floor") if phase in servers]
        for number in range(rounds):
            print(f"bench: round {number + 1}/{rounds}", flush=True)
            # Every run of a floatsrv server comes right after a run of the echo ceiling, and figures are
            # compared as ratios to that echo run: slow spells of a shared machine hit both alike. The order
            # of the servers rotates from round to round, because the later runs of a series measure a few
            # percent slower whatever the server (we saw 8% between two identical back-to-back runs).
            order = phases[number % len(phases) :] + phases[: number % len(phases)]
            for scenario in (s for s in SCENARIOS if not s.get("policy_only")):
                for phase in order:
                    if (phase == "naive" and not scenario.get("target")) or (
                        phase == "floor" and not scenario.get("floor")
                    ):
                        continue
                    ceiling = measure(servers["echo"], echo, seconds, None)
                    result = measure(servers[phase], scenario, seconds, tokens[phase])
                    result["echo_rps"] = ceiling["rps"]
                    runs["echo"].setdefault(scenario["name"], []).append(ceiling)
                    runs[phase].setdefault(scenario["name"], []).append(result)
        # Policy in force against none: the same server but for its policy, in back-to-back pairs whose order
        # alternates (a difference of a few percent would drown in the drift between rounds otherwise).
        print(f"bench: policy in force, {2 * rounds} pairs", flush=True)
        for number in range(2 * rounds):
            for scenario in (s for s in SCENARIOS if s.get("target") or s.get("policy_only")):
                pair = ("small", "policy") if number % 2 == 0 else ("policy", "small")
                got = {phase: measure(servers[phase], scenario, seconds, tokens[phase]) for phase in pair}
                runs["policy"].setdefault(scenario["name"], []).append(
                    {**got["policy"], "versus_small": got["policy"]["rps"] / got["small"]["rps"]}
                )
    finally:
        for name, server in servers.items():
            results[f"{name}_rss_mib"] = server.stop()
        if (workdir / "small.log").exists():
            results["small_log_lines"] = sum(1 for _ in (workdir / "small.log").open("rb"))
        shutil.rmtree(workdir, ignore_errors=True)
    results["runs"] = runs
    report(results)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    return 0


REPORTS = {
    "concurrency, 30 days by hour": "/v1/reports/concurrency?license_id=1000&bucket=hour&since={since}",
    "consumption, 30 days by day": "/v1/reports/consumption?license_id=1000&bucket=day&since={since}",
    "denials, first page": "/v1/reports/denials?license_id=1000",
}


def timed_get(port: int, path: str, headers: dict[str, str]) -> tuple[float, bytes, str]:
    """GET a path of the server: (seconds it took, the body, the address it ended at after redirects)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as resp:
        body = resp.read()
    return time.perf_counter() - started, body, resp.url


def time_reports(port: int, token: str) -> dict[str, list[float]]:
    """Seconds each history report of the scale database's busiest license takes, three times each."""
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 30 * 86_400))
    timings: dict[str, list[float]] = {}
    for name, path in REPORTS.items():
        for _ in range(3):
            seconds, raw, _ = timed_get(port, path.format(since=since), {"Authorization": f"Bearer {token}"})
            timings.setdefault(name, []).append(seconds)
            body = json.loads(raw)
            assert body["success"], body
        if name.startswith("concurrency"):
            assert max(b["peak"] for b in body["data"]["buckets"]) > 0, "the history was not read"
    return timings


# Console pages on the scale database (the busiest license is 1000; its seats and events are the most).
CONSOLE_PAGES = {
    "overview, first page": "/ui/",
    "overview, last page": "/ui/?offset=9950",
    "seats": "/ui/seats",
    "seats of license 1000": "/ui/seats?license_id=1000",
    "seats by host (a scan)": "/ui/seats?host=nobody-here&state=all",
    "seats by user": "/ui/seats?user=nobody-here&state=all",
    "ended seats": "/ui/seats?state=ended",
    "borrowed seats": "/ui/seats?state=borrowed",
    "history, 7 days by hour": "/ui/history?license_id=1000&range=7d",
    "history, 30 days by day": "/ui/history?license_id=1000&range=30d",
    "denials": "/ui/denials",
    "usage": "/ui/usage?license_id=1000",
    "usage per period": "/ui/usage?license_id=1000&bucket=period",
    "denials of a user": "/ui/denials?user=nobody-here",
    "denials CSV": "/ui/denials?format=csv",
    "licenses": "/ui/licenses",
    "users": "/ui/users",
    "audit": "/ui/audit",
    "audit of an action": "/ui/audit?action=seat_revoked",
    "sync": "/ui/sync",
}


def time_console(port: int, token: str) -> dict[str, list[float]]:
    """Seconds each console page takes to render on the scale database, three times each. A console session
    is a token in a cookie, so the bench's admin token serves as one."""
    timings: dict[str, list[float]] = {}
    for name, path in CONSOLE_PAGES.items():
        for _ in range(3):
            seconds, body, landed = timed_get(port, path, {"Cookie": f"floatsrv_session={token}"})
            timings.setdefault(name, []).append(seconds)
            assert landed.endswith(path), (path, landed)  # not sent to the login form
            assert b"<h1>" in body or "format=csv" in path, path
    return timings


def measure(server: Server, scenario: dict[str, Any], seconds: int, token: str | None) -> dict[str, Any]:
    wrk(server.port, {**scenario, "modulo": scenario.get("modulo", 0)}, 1, token)  # warm-up
    return wrk(server.port, scenario, seconds, token)


def report(results: dict[str, Any]) -> None:
    runs = results["runs"]
    echoes = [run for per_scenario in runs["echo"].values() for run in per_scenario]
    rounds = results["rounds"]

    def to_echo(phase: str, name: str) -> list[float]:
        """Each run's throughput as a fraction of the echo run made just before it (one per round)."""
        return [run["rps"] / run["echo_rps"] for run in runs[phase][name]]

    def versus(phase: str, name: str, other: str) -> float:
        """Median over rounds of phase's echo ratio over other's: how much faster phase is than other."""
        return median([a / b for a, b in zip(to_echo(phase, name), to_echo(other, name), strict=True)])

    def latency_versus(phase: str, name: str, other: str) -> float:
        """The same for p50 latency, each run's p50 scaled by its echo's throughput (a machine k times
        slower serves k times fewer requests at k times the latency)."""

        def scaled(which: str) -> list[float]:
            return [run["p50_us"] * run["echo_rps"] for run in runs[which][name]]

        return median([a / b for a, b in zip(scaled(phase), scaled(other), strict=True)])

    def stat(phase: str, name: str, key: str) -> float:
        return median([run[key] for run in runs[phase][name]])

    rows: list[tuple[str, ...]] = [("scenario", "phase", "req/s", "p50 ms", "p99 ms", "x echo", "x naive", "errors")]
    rows.append(
        (
            "bare aiohttp echo (ceiling)",
            "-",
            f"{median([e['rps'] for e in echoes]):.0f}",
            f"{median([e['p50_us'] for e in echoes]) / 1000:.2f}",
            f"{median([e['p99_us'] for e in echoes]) / 1000:.2f}",
            "1.00",
            "",
            str(sum(e["errors"] + e["non2xx"] for e in echoes)),
        )
    )
    for phase in ("small", "naive", "scale", "floor"):
        for name, data in runs[phase].items():
            naive = name in runs["naive"] and phase in ("small", "scale")
            rows.append(
                (
                    name,
                    phase,
                    f"{stat(phase, name, 'rps'):.0f}",
                    f"{stat(phase, name, 'p50_us') / 1000:.2f}",
                    f"{stat(phase, name, 'p99_us') / 1000:.2f}",
                    f"{median(to_echo(phase, name)):.2f}",
                    f"{versus(phase, name, 'naive'):.1f}" if naive else "",
                    str(sum(r["errors"] + r["non2xx"] for r in data)),
                )
            )
    print()
    print(
        f"medians of {rounds} round(s); every server run follows an echo run and 'x echo' is the ratio to it;"
        " 'x naive' compares those ratios"
    )
    print(table(rows))
    print()
    rss = ", ".join(
        f"{name} {results[f'{name}_rss_mib']:.0f} MiB"
        for name in ("echo", "small", "naive", "policy", "scale", "floor")
        if f"{name}_rss_mib" in results
    )
    print(f"peak RSS: {rss}")
    print(f"log lines written by the small server (info level, one per request): {results.get('small_log_lines')}")
    if "scale_startup_s" in results:
        print(
            f"scale database: {results['scale_db_mib']:.0f} MiB; start-up to ready: "
            + ", ".join(f"{t:.2f} s" for t in results["scale_startup_s"])
        )
    for name in runs["floor"]:
        floor, ours = median(to_echo("floor", name)), median(to_echo("small", name))
        print(
            f"floor ({name}, bench/floor.py): {floor:.2f} x echo; floatsrv's small server reaches"
            f" {ours / floor:.2f} of it"
        )
    checks = []
    for name in ("register heartbeat", "add_feature_consumption"):
        ratio, to_naive = median(to_echo("small", name)), versus("small", name, "naive")
        p99 = stat("small", name, "p99_us")
        checks.append((f"{name}: >= 0.5 x echo", ratio >= 0.5, f"{ratio:.2f}"))
        checks.append((f"{name}: p99 <= 25 ms", p99 <= 25_000, f"{p99 / 1000:.1f} ms"))
        checks.append((f"{name}: >= 2 x naive", to_naive >= 2, f"{to_naive:.1f}"))
    for name, data in runs["policy"].items():
        change = median([run["versus_small"] for run in data]) - 1
        checks.append(
            (
                f"policy in force: {name} loses < 5% (median of {len(data)} pairs)",
                change > -0.05,
                f"{change * 100:+.1f}%",
            )
        )
    for name, timings in results.get("reports_s", {}).items():
        checks.append((f"scale: report {name} < 1 s (median of 3)", median(timings) < 1, f"{median(timings):.3f} s"))
    for name, timings in results.get("console_s", {}).items():
        checks.append(
            (f"scale: console {name} < 300 ms (median of 3)", median(timings) < 0.3, f"{median(timings) * 1000:.0f} ms")
        )
    if runs["scale"]:
        startup = median(results["scale_startup_s"])
        checks.append(("scale start-up < 2 s (median of 3)", startup < 2, f"{startup:.2f} s"))
        for name in runs["small"]:
            change = versus("scale", name, "small") - 1
            slower = latency_versus("scale", name, "small") - 1
            checks.append(
                (
                    f"scale: {name} within 10%",
                    change >= -0.10 and slower <= 0.10,
                    f"{change * 100:+.1f}% req/s, {slower * 100:+.1f}% p50 (p99 "
                    f"{stat('small', name, 'p99_us') / 1000:.1f} -> {stat('scale', name, 'p99_us') / 1000:.1f} ms)",
                )
            )
    width = max(len(c[0]) for c in checks)
    for label, ok, value in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {label.ljust(width)}  {value}")
    results["checks"] = [{"check": c[0], "pass": c[1], "value": c[2]} for c in checks]


if __name__ == "__main__":
    sys.exit(main())
