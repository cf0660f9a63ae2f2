"""Rollback detection (issue 16), online and offline, with real server processes, the real CLIs and a real local
upstream: back up, consume, deliver, stop, restore the backup, start, consume more, deliver. The rollback is
found (`usage_rollback_detected`), the vendor's totals end exactly at its pre-restore totals plus the usage
recorded after the restore, and it never receives a lower total. And delta ids after a restore never repeat."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

from floatsrv.db.sync import BatchRecord, BatchRow
from floatsrv.domain.sync import Batch
from floatsrv.upstream import RebillyUpstream
from tests.conftest import example_dict, floatsrv_cli
from tests.polling import wait_for
from tests.procs import ServerProcess
from tests.upstreams import UPSTREAM_TOKEN, FloatsrvUpstream, serve_in_thread


def metered(config: dict[str, Any]) -> dict[str, Any]:
    config["licenses"][0]["features"].append(
        {"code": "tokens", "feature_type": "consumption", "allow_unlimited_consumptions": True}
    )
    return config


def consume(server: ServerProcess, token: str, prefix: str, count: int) -> None:
    for n in range(count):
        event = {"event_id": f"{prefix}-{n}", "product": "demo", "feature": "tokens", "quantity": "1"}
        status, body = server.request("POST", "/v1/usage/events", event, token)
        assert status == 200, body


def restore(server: ServerProcess, archive: Path) -> None:
    assert server.stop() == 0
    result = server.cli("db", "restore", str(archive))
    assert result.returncode == 0, result.stderr
    server.start()


def test_online_rollback_is_found_and_repaired(tmp_path: Path) -> None:
    vendor = FloatsrvUpstream()
    with serve_in_thread(vendor) as base:
        config = metered(example_dict())
        config["sync"] = {
            "interval_seconds": 0.2,
            "shutdown_timeout_seconds": 2,
            "upstreams": [{"name": "vendor", "url": base + "/ingest", "token": UPSTREAM_TOKEN}],
        }
        server = ServerProcess(tmp_path, config)
        server.start()

        def vendor_total() -> Decimal:
            return sum((v for (lic, feature, _), v in vendor.totals().items() if feature == "tokens"), Decimal(0))

        try:
            demo = server.token("demo", "demo-password")
            consume(server, demo, "before-backup", 3)
            wait_for(lambda: vendor_total() == 3)
            archive = tmp_path / "backup.tar"
            assert server.cli("db", "backup", "--out", str(archive)).returncode == 0
            consume(server, demo, "lost", 4)  # delivered, then lost with the restore
            wait_for(lambda: vendor_total() == 7)
            restore(server, archive)
            demo = server.token("demo", "demo-password")
            consume(server, demo, "after-restore", 2)
            wait_for(lambda: vendor_total() == 9)  # 7 the vendor had + 2 since the restore
            wait_for(lambda: any(e.get("event") == "usage_rollback_detected" for e in server.log_lines()))
            status, ready = server.request("GET", "/readyz")
            assert status == 200 and ready["checks"]["usage_rollback"]["status"] == "warning", ready
            assert vendor.lower_totals == [], vendor.lower_totals  # never sent below what it held
            assert any(flags.get("usage_rollback") for flags in vendor.flags)  # and it was told
            local = server.request("GET", "/v1/licenses/1001", token=demo)[1]["data"]
            [tokens] = [f for f in local["features"] if f["code"] == "tokens"]
            assert tokens["consumption"]["total"] == "9", tokens
            with sqlite3.connect(f"file:{server.data_dir / 'floatsrv.db'}?mode=ro", uri=True) as conn:
                epochs = {row[0] for row in conn.execute("SELECT DISTINCT epoch FROM sync_batches")}
            conn.close()
            assert 0 in epochs and len(epochs) == 2, epochs  # batches made after the restore: a new lineage
        finally:
            assert server.stop() == 0


def test_offline_rollback_is_found_and_repaired(tmp_path: Path) -> None:
    vendor_dir = tmp_path / "vendor"
    vendor_dir.mkdir()
    ledger = vendor_dir / "ledger.json"
    vendor_key = vendor_dir / "receipt-key.pem"
    keygen = floatsrv_cli("usage", "keygen", "--out", str(vendor_key), cwd=vendor_dir)  # the vendor's machine
    assert keygen.returncode == 0, keygen.stderr
    vendor_public = keygen.stdout.strip().split()[-1]
    server = ServerProcess(tmp_path, metered(example_dict()))
    server.start()
    server_key = server.cli("server-key").stdout.strip()

    def round_trip(name: str) -> str:
        report, receipt = tmp_path / f"{name}.report", vendor_dir / f"{name}.receipt"
        assert server.cli("usage", "export", "--out", str(report)).returncode == 0
        made = floatsrv_cli(
            "usage", "receipt", str(report), "--server-public-key", server_key, "--vendor-key", str(vendor_key),
            "--ledger", str(ledger), "--out", str(receipt), cwd=vendor_dir,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        acked = server.cli("usage", "ack", str(receipt), "--vendor-public-key", vendor_public)
        assert acked.returncode == 0, acked.stderr
        return acked.stderr

    def vendor_total() -> Decimal:
        entries = json.loads(ledger.read_text()).values()
        return sum((Decimal(e["quantity"]) for e in entries if e["feature"] == "tokens"), Decimal(0))

    try:
        demo = server.token("demo", "demo-password")
        consume(server, demo, "before-backup", 3)
        round_trip("first")
        archive = tmp_path / "backup.tar"
        assert server.cli("db", "backup", "--out", str(archive)).returncode == 0
        consume(server, demo, "lost", 4)
        round_trip("second")
        assert vendor_total() == 7
        restore(server, archive)
        demo = server.token("demo", "demo-password")
        consume(server, demo, "after-restore", 2)
        assert server.stop() == 0  # a restart before the vendor was asked: what was counted since stays new
        server.start()
        demo = server.token("demo", "demo-password")
        consume(server, demo, "after-restart", 1)
        # After the restore, the first report carries no usage (its 5 is below the vendor's 7): it asks the
        # vendor what it holds, and the receipt's answer repairs the counter.
        said = round_trip("third")
        assert "usage_rollback_detected" in said, said
        third = json.loads((tmp_path / "third.report").read_bytes().split(b"\n")[1])
        assert third["records"] == [] and third["holdings_requested"] is True, third
        assert vendor_total() == 7
        round_trip("fourth")  # the repaired counter: the vendor's 7 + the 3 counted since the restore
        fourth = json.loads((tmp_path / "fourth.report").read_bytes().split(b"\n")[1])
        assert [r["quantity"] for r in fourth["records"] if r["feature"] == "tokens"] == ["10"], fourth
        assert fourth["usage_rollback"] is True  # and the vendor is told
        assert vendor_total() == 10
        audit = server.cli("audit", "--json").stdout
        assert "usage_rollback_detected" in audit
    finally:
        assert server.stop() == 0


def test_delta_ids_after_a_restore_never_repeat() -> None:
    record = BatchRecord("b", 1001, "demo", "tokens", 0, None, 5, 5000, 4, 4000, 0, False)
    before = Batch(BatchRow("b1", "rebilly", 0, "pending", 0, None, None, None, epoch=0), [record])
    after = Batch(BatchRow("b2", "rebilly", 0, "pending", 0, None, None, None, epoch=77), [record])
    ids = {RebillyUpstream.usage_id("fs-1", b.records[0], b.row.epoch) for b in (before, after)}
    assert len(ids) == 2  # revision 5 of the same counter, in two lineages: two ids
