"""The PostgreSQL backend against SQLite, in one run: `python3 dev.py bench --postgresql`.

The heartbeat (`/api/v4/register`) and usage-event (`/v1/usage/events`) scenarios on three set-ups started
side by side: the default SQLite server, one node on PostgreSQL, and two nodes on one PostgreSQL database
(two wrk processes at once, half the connections each, as a load balancer would spread them). Rounds are
interleaved and every PostgreSQL figure is stated as a ratio to the SQLite run just before it, with p50 and
p99 beside it. PostgreSQL is a throwaway server on this machine (tests/pgserver.py), so the database's own
work competes for the same cores: on a 2-core machine the two-node figures say what correctness across
nodes costs, not what two machines would serve.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from run import BENCH_LICENSE, CONNECTIONS, ROOT, SCENARIOS, Server, floatsrv, login, start_floatsrv, table, wrk

sys.path.insert(0, str(ROOT))
from tests.pgserver import PgServer

CHOSEN = [s for s in SCENARIOS if s["name"] in ("register heartbeat", "usage event (/v1)")]


def on_postgresql(config: Path, dsn: str) -> Path:
    data: dict[str, Any] = yaml.safe_load(config.read_text())
    data["storage"]["backend"] = "postgresql"
    data["storage"]["postgresql"] = {"dsn": dsn}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def split(servers: list[Server], scenario: dict[str, Any], seconds: int, tokens: list[str]) -> dict[str, Any]:
    """wrk against every server at once, the connections shared out; requests summed, latencies the worst."""
    share = CONNECTIONS // len(servers)
    with ThreadPoolExecutor(len(servers)) as pool:
        runs = list(
            pool.map(
                lambda pair: wrk(pair[0].port, scenario, seconds, pair[1], share), zip(servers, tokens, strict=True)
            )
        )
    return {
        "rps": sum(run["rps"] for run in runs),
        "p50_us": max(run["p50_us"] for run in runs),
        "p99_us": max(run["p99_us"] for run in runs),
        "errors": sum(run["errors"] + run["non2xx"] for run in runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="floatsrv-bench-pg-"))
    servers: dict[str, list[Server]] = {}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {"sqlite": {}, "pg 1 node": {}, "pg 2 nodes": {}}
    try:
        with PgServer() as pg:
            config, _ = floatsrv(workdir, "lite", [BENCH_LICENSE])
            servers["sqlite"] = [start_floatsrv(config, workdir, "lite")]
            config, _ = floatsrv(workdir, "pg1", [BENCH_LICENSE])
            servers["pg 1 node"] = [start_floatsrv(on_postgresql(config, pg.create_database("bench1")), workdir, "pg1")]
            config, _ = floatsrv(workdir, "pg2", [BENCH_LICENSE])
            on_postgresql(config, pg.create_database("bench2"))
            servers["pg 2 nodes"] = [
                start_floatsrv(config, workdir, f"pg2-{n}", workdir / f"data-pg2-{n}") for n in range(2)
            ]
            tokens = {name: [login(s.port) for s in group] for name, group in servers.items()}
            for number in range(args.rounds):
                print(f"bench: PostgreSQL round {number + 1}/{args.rounds}", flush=True)
                for scenario in CHOSEN:
                    for name, group in servers.items():
                        split(group, scenario, 1, tokens[name])  # warm-up
                        runs[name].setdefault(scenario["name"], []).append(
                            split(group, scenario, args.seconds, tokens[name])
                        )
            for group in servers.values():
                for server in group:
                    server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows: list[tuple[str, ...]] = [("scenario", "set-up", "req/s", "p50 ms", "p99 ms", "x sqlite", "errors")]
    for scenario in CHOSEN:
        name = scenario["name"]
        base = runs["sqlite"][name]
        for setup, per in runs.items():
            got = per[name]
            ratio = statistics.median(a["rps"] / b["rps"] for a, b in zip(got, base, strict=True))
            rows.append(
                (
                    name,
                    setup,
                    f"{statistics.median(r['rps'] for r in got):.0f}",
                    f"{statistics.median(r['p50_us'] for r in got) / 1000:.2f}",
                    f"{statistics.median(r['p99_us'] for r in got) / 1000:.2f}",
                    f"{ratio:.2f}",
                    str(sum(r["errors"] for r in got)),
                )
            )
    print(f"\nmedians of {args.rounds} round(s) of {args.seconds} s; 'x sqlite': ratio to the SQLite run of the round")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
