#!/usr/bin/env python3
"""Heartbeat latency during a flood of failed logins from many addresses (`python3 dev.py bench --login-flood`).

A floatsrv server with its default login limits (server on CPU 0, load on CPU 1, as in bench/run.py). wrk sends
register heartbeats on 16 connections for SECONDS, first alone, then while a flood client sends wrong passwords
for `admin` as fast as it can, from 250 loopback addresses (127.0.1.1-250) on 256 connections. Printed: the
heartbeat p50/p95/p99 both ways, what the flood got (401 = a password check ran, 429 = throttled per address or
user, 503 = checks saturated), and the target: heartbeat p95 under 250 ms during the flood.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from run import BENCH_LICENSE, SCENARIOS, floatsrv, login, pin, start_floatsrv, wrk

SECONDS = 10
ADDRESSES = [f"127.0.1.{n}" for n in range(1, 251)]


async def flood(port: int, seconds: float, concurrency: int = 256) -> dict[str, Any]:
    """Wrong passwords for admin from rotating addresses until `seconds` pass; counts answers by status."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    header = {"Authorization": "Basic " + base64.b64encode(b"admin:not-the-password").decode()}
    sessions = [
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=1)) for address in ADDRESSES
    ]

    async def worker(n: int) -> None:
        i = n
        while time.monotonic() < deadline:
            session = sessions[i % len(sessions)]
            i += concurrency
            try:
                async with session.get(f"http://127.0.0.1:{port}/auth", headers=header) as resp:
                    await resp.read()
                    statuses[resp.status] += 1
            except aiohttp.ClientError:
                statuses[0] += 1

    try:
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    finally:
        for session in sessions:
            await session.close()
    return {str(status): count for status, count in sorted(statuses.items())}


def flood_process(port: int, seconds: float) -> subprocess.Popen[str]:
    code = f"import asyncio, json, login_flood; print(json.dumps(asyncio.run(login_flood.flood({port}, {seconds}))))"
    return subprocess.Popen(
        [*pin("1"), sys.executable, "-c", code], cwd=Path(__file__).parent, stdout=subprocess.PIPE, text=True
    )


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="floatsrv-bench-flood-"))
    heartbeat = SCENARIOS[0]
    try:
        config, _ = floatsrv(workdir, "flood", [BENCH_LICENSE])
        server = start_floatsrv(config, workdir, "flood")
        try:
            token = login(server.port)
            wrk(server.port, heartbeat, 2, token, connections=16)  # warm-up
            alone = wrk(server.port, heartbeat, SECONDS, token, connections=16)
            flooder = flood_process(server.port, SECONDS + 2)
            time.sleep(1.0)  # the flood is under way
            during = wrk(server.port, heartbeat, SECONDS, token, connections=16)
            out, _ = flooder.communicate(timeout=120)
            answers = json.loads(out)
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    attempts = sum(answers.values())
    print(
        f"login flood: {attempts} failed-login attempts in {SECONDS + 2} s from {len(ADDRESSES)} addresses: {answers}"
    )
    print("heartbeat (16 connections)      req/s   p50 ms  p95 ms  p99 ms")
    for label, run in (("alone", alone), ("during the login flood", during)):
        print(
            f"  {label:<30}{run['rps']:>6.0f}  {run['p50_us'] / 1000:>6.2f}  {run['p95_us'] / 1000:>6.2f}"
            f"  {run['p99_us'] / 1000:>6.2f}"
        )
    ok = during["p95_us"] <= 250_000 and during["non2xx"] == 0 and during["errors"] == 0
    print(f"  [{'PASS' if ok else 'FAIL'}] heartbeat p95 <= 250 ms during the flood: {during['p95_us'] / 1000:.1f} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
