"""Vendor-signed license files through the API: what a file grants is served at once, every kind of tampering
is refused with its own code and changes nothing but the audit log, and a new file never strands a client.

The licenses of the demo config reach the server as a demo-signed file (tests.licensing), so `api` already
serves license 1001 from a file of series "tests". Vendor builds are made here by giving the app the trust
anchor a vendor build carries (`create_app(trust=...)`); tests/test_vendor_build.py builds real ones.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from floatsrv.entitlements.fileformat import armour, dearmour, kid_of, parse_envelope, sign
from floatsrv.entitlements.trust import TrustAnchor, TrustedKey
from floatsrv.signing import RECEIPT, public_key_text
from floatsrv.signing import sign as sign_document
from tests.conftest import Api
from tests.licensing import demo_key, demo_licenses, next_sequence, signed_file
from tests.metering_config import metering_license

OTHER = [{"id": 2002, "product": "other", "floating_users": 2}]


def envelope_fields(text: str) -> dict[str, Any]:
    envelope = parse_envelope(dearmour(text))
    return {"alg": envelope.alg, "kid": envelope.kid, "payload": envelope.payload, "sig": envelope.sig}


def rewrap(fields: dict[str, Any]) -> str:
    doc = {
        "alg": fields["alg"],
        "kid": fields["kid"],
        "payload": base64.b64encode(fields["payload"]).decode(),
        "sig": base64.b64encode(fields["sig"]).decode(),
    }
    return armour(json.dumps(doc).encode())


def vendor_trust(*keys: Ed25519PrivateKey, allow_inline: bool = True) -> TrustAnchor:
    """The trust anchor `python3 dev.py build --vendor-key ...` puts into a vendor build."""
    trusted = tuple(TrustedKey(kid_of(key.public_key()), key.public_key(), "test vendor", False) for key in keys)
    return TrustAnchor("vendor", trusted, allow_inline)


async def admin_token(api: Api) -> str:
    """An admin's token; the client's own requests stay those of its user login."""
    user = api.token
    token = await api.login("admin", "admin-password")
    api.token = user
    return token


async def import_file(api: Api, text: str, token: str | None = None) -> tuple[int, Any]:
    return await api.post(
        "/v1/license-files", None, raw=text.encode(), headers={"Content-Type": "text/plain"}, token=token
    )


async def snapshot(api: Api, token: str) -> Any:
    """Everything a license file import may change: files, licenses, seats."""
    files = (await api.get("/v1/license-files", token=token, params={"all": "true"}))[1]["data"]["data"]
    licenses = (await api.get("/v1/licenses", token=token))[1]["data"]["data"]
    seats = (await api.get("/v1/seats", token=token, params={"state": "all"}))[1]["data"]["data"]
    return files, licenses, seats


async def audit(api: Api, token: str, action: str) -> list[dict[str, Any]]:
    status, body = await api.get("/v1/audit", token=token, params={"action": action})
    assert status == 200, body
    rows: list[dict[str, Any]] = body["data"]["data"]
    return rows


# --- the tamper matrix: one row each, refused with its code, nothing changed, the refusal audited ---

Make = Callable[[Api], Awaitable[str]]


async def payload_byte(api: Api) -> str:
    fields = envelope_fields(signed_file(OTHER))
    fields["payload"] = fields["payload"].replace(b'"floating_users": 2', b'"floating_users": 9')
    return rewrap(fields)


async def signature_byte(api: Api) -> str:
    fields = envelope_fields(signed_file(OTHER))
    fields["sig"] = bytes([fields["sig"][0] ^ 1]) + fields["sig"][1:]
    return rewrap(fields)


async def armour_byte(api: Api) -> str:
    lines = signed_file(OTHER).splitlines()
    lines[2] = lines[2][:10] + "*" + lines[2][11:]
    return "\n".join(lines) + "\n"


async def swapped_signature(api: Api) -> str:
    a, b = envelope_fields(signed_file(OTHER)), envelope_fields(signed_file(OTHER))
    return rewrap({**a, "sig": b["sig"]})


async def receipt_signature(api: Api) -> str:
    """A usage receipt signed with the very key this build trusts, its payload and signature presented as
    a license file: the signature covers another domain prefix, so it cannot verify."""
    payload = json.loads(envelope_fields(signed_file(OTHER))["payload"])
    document = sign_document(RECEIPT, payload, demo_key())
    header, body, signature = document.split(b"\n")[:3]
    fields = {"alg": "ed25519", "kid": kid_of(demo_key().public_key()), "payload": body}
    return rewrap({**fields, "sig": base64.b64decode(signature)})


async def untrusted_key(api: Api) -> str:
    return signed_file(OTHER, key=Ed25519PrivateKey.generate())


async def alg_changed(api: Api) -> str:
    return rewrap({**envelope_fields(signed_file(OTHER)), "alg": "rs256"})


async def expired(api: Api) -> str:
    return signed_file(OTHER, expires_at=api.clock.now() - timedelta(seconds=1))


async def not_yet_valid(api: Api) -> str:
    return signed_file(OTHER, not_before=api.clock.now() + timedelta(hours=1))


async def other_server(api: Api) -> str:
    return signed_file(OTHER, binding={"server_key": public_key_text(Ed25519PrivateKey.generate())})


async def equal_sequence(api: Api) -> str:
    assert (await import_file(api, signed_file(OTHER, series="x", sequence=5), await admin_token(api)))[0] == 201
    return signed_file(OTHER, series="x", sequence=5, file_id="x-5-again")


async def older_sequence(api: Api) -> str:
    assert (await import_file(api, signed_file(OTHER, series="x", sequence=5), await admin_token(api)))[0] == 201
    return signed_file(OTHER, series="x", sequence=4)


async def after_removing_the_newer(api: Api) -> str:
    token = await admin_token(api)
    assert (await import_file(api, signed_file(OTHER, series="x", sequence=4), token))[0] == 201
    assert (await import_file(api, signed_file(OTHER, series="x", sequence=5), token))[0] == 201
    async with api.client.delete("/v1/license-files/x-5", headers=api.headers(token)) as resp:
        assert resp.status == 200, await resp.text()
    return signed_file(OTHER, series="x", sequence=5, file_id="x-5-reissued")


async def license_in_another_series(api: Api) -> str:
    return signed_file(demo_licenses(), series="elsewhere")  # 1001 is in force from series "tests"


async def malformed_field(api: Api) -> str:
    payload = json.loads(envelope_fields(signed_file(OTHER))["payload"])
    payload["licenses"][0]["floating_users"] = 0
    return sign(json.dumps(payload).encode(), demo_key())


TAMPERED: list[tuple[Make, str, int]] = [
    (payload_byte, "license_file_signature_invalid", 422),
    (signature_byte, "license_file_signature_invalid", 422),
    (armour_byte, "license_file_malformed", 400),
    (swapped_signature, "license_file_signature_invalid", 422),
    (receipt_signature, "license_file_signature_invalid", 422),
    (untrusted_key, "license_file_key_untrusted", 422),
    (alg_changed, "license_file_alg_unsupported", 400),
    (expired, "license_file_expired", 422),
    (not_yet_valid, "license_file_not_yet_valid", 422),
    (other_server, "license_file_wrong_server", 422),
    (equal_sequence, "license_file_superseded", 409),
    (older_sequence, "license_file_superseded", 409),
    (after_removing_the_newer, "license_file_superseded", 409),
    (license_in_another_series, "license_file_license_conflict", 409),
    (malformed_field, "license_file_payload_invalid", 400),
]


@pytest.mark.parametrize(("make", "code", "status"), TAMPERED, ids=[make.__name__ for make, _, _ in TAMPERED])
async def test_tampered_files_are_refused_and_change_nothing(api: Api, make: Make, code: str, status: int) -> None:
    text = await make(api)
    token = await admin_token(api)
    before = await snapshot(api, token)
    refused_before = len(await audit(api, token, "license_file_refused"))
    answer = await import_file(api, text, token)
    assert answer[0] == status and answer[1]["error"]["code"] == code, answer
    assert await snapshot(api, token) == before
    rows = await audit(api, token, "license_file_refused")
    assert len(rows) == refused_before + 1 and rows[0]["detail"]["code"] == code and rows[0]["actor"] == "admin"
    assert (await api.register("after-refusal"))[0] == 200  # serving goes on


def test_every_changed_byte_of_a_file_is_refused() -> None:
    from floatsrv.entitlements.trust import load_trust_anchor
    from floatsrv.entitlements.verify import open_file
    from floatsrv.errors import LicenseFileRefused

    text = signed_file(OTHER)
    anchor = load_trust_anchor()
    assert open_file(text, anchor).payload.licenses[0].floating_users == 2
    body_start = text.index("\n") + 1
    body_end = text.rindex("-----END")
    for position in range(body_start, body_end):
        if text[position] == "\n":
            continue
        for replacement in ("A", "/"):
            if text[position] == replacement:
                continue
            changed = text[:position] + replacement + text[position + 1 :]
            with pytest.raises(LicenseFileRefused):
                open_file(changed, anchor)


# --- importing, listing, removing ---


async def test_import_applies_at_once_list_and_remove(api: Api) -> None:
    token = await admin_token(api)
    text = signed_file(OTHER, series="plant", sequence=1, file_id="plant-1")
    status, body = await import_file(api, text, token)
    assert status == 201, body
    imported = body["data"]
    assert (imported["outcome"], imported["licenses_added"], imported["entitlements"]) == ("imported", [2002], "demo")
    assert imported["binding"] == {"unbound": True} and imported["state"] == "in_force"
    assert (await import_file(api, text, token))[0] == 200  # the same file again: nothing changes
    view = await api.license(2002)
    assert (view["floating_users"], view["entitlements"], view["license_file"]) == (2, "demo", "plant-1")
    assert (await api.post("/api/v4/register", {"product": "other", "user": "u1"}))[0] == 200

    files = (await api.get("/v1/license-files", token=token))[1]["data"]["data"]
    assert {f["file_id"] for f in files} == {"plant-1", files[-1]["file_id"]} and len(files) == 2
    async with api.client.delete("/v1/license-files/plant-1", headers=api.headers(token)) as resp:
        assert resp.status == 200 and (await resp.json())["data"]["state"] == "removed"
    assert (await api.get("/v1/licenses/2002"))[0] == 404
    [seat] = [s for s in await api.seats(state="all") if s["license_id"] == 2002]
    assert (seat["state"], seat["end_reason"]) == ("ended", "license_removed")
    # The SDK's next heartbeat (a re-register) gets LicenseSpring's error for a license that is gone.
    status, body = await api.post("/api/v4/register", {"product": "other", "user": "u1"})
    assert (status, body["code"]) == (400, "unknown_product")
    async with api.client.delete("/v1/license-files/plant-1", headers=api.headers(token)) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "license_file_not_found"
    actions = [(r["action"], r["target"]) for r in await audit(api, token, "license_file_imported")]
    assert ("license_file_imported", "plant-1") in actions
    [removed] = await audit(api, token, "license_file_removed")
    assert removed["target"] == "plant-1" and removed["detail"]["seats_ended"] == 1


async def test_licensespring_upload_takes_a_license_file(api: Api) -> None:
    import aiohttp

    token = await admin_token(api)
    form = aiohttp.FormData()
    form.add_field("offline_license", signed_file(OTHER, file_id="upload-1"), filename="license.lic")
    async with api.client.post("/api/v4/license/upload", data=form, headers=api.headers(token)) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    assert (body["status"], body["file_id"], body["licenses"]) == ("ok", "upload-1", [2002])
    form = aiohttp.FormData()
    form.add_field("file", signed_file(OTHER, key=Ed25519PrivateKey.generate()), filename="x.lic")
    async with api.client.post("/api/v4/license/upload", data=form, headers=api.headers(token)) as resp:
        body = await resp.json()
        assert (resp.status, body["code"]) == (400, "license_file_key_untrusted")
    form = aiohttp.FormData()
    form.add_field("file", signed_file(OTHER), filename="x.lic")
    async with api.client.post("/api/v4/license/upload", data=form, headers=api.headers()) as resp:
        assert resp.status == 403  # the demo user is no admin


async def test_json_body_and_bad_bodies(api: Api) -> None:
    token = await admin_token(api)
    status, body = await api.post("/v1/license-files", {"license_file": signed_file(OTHER)}, token=token)
    assert status == 201, body
    status, body = await api.post("/v1/license-files", {"license_file": 5}, token=token)
    assert (status, body["error"]["code"]) == (400, "validation_error")
    for raw in (b"\xff\xfe", b"hello"):
        status, body = await api.post("/v1/license-files", None, raw=raw, headers={"Content-Type": "text/plain"})
        assert status == 403  # a user login may not import
        status, body = await api.post(
            "/v1/license-files", None, raw=raw, headers={"Content-Type": "text/plain"}, token=token
        )
        assert (status, body["error"]["code"]) == (400, "license_file_malformed"), body


# --- a new file never strands a client ---


async def test_lowering_seats_keeps_held_ones_refuses_new_ones_and_converges(api: Api) -> None:
    token = await admin_token(api)
    for user in ("a", "b", "c"):
        assert (await api.register(user))[0] == 200
    fewer = demo_licenses()
    fewer[0]["floating_users"] = 1
    status, body = await import_file(api, signed_file(fewer), token)  # the next file of series "tests"
    assert status == 201 and body["data"]["licenses_changed"] == [1001], body
    for user in ("a", "b", "c"):  # held seats continue: their heartbeats (re-registers) succeed
        assert (await api.register(user))[0] == 200
    status, body = await api.register("d")
    assert (status, body["code"]) == (400, "floating_not_available")
    for user in ("a", "b"):
        assert (await api.post("/api/v4/unregister", {"product": "demo", "user": user}))[0] == 200
    assert (await api.register("d"))[0] == 400  # c still holds the one seat there is
    assert (await api.post("/api/v4/unregister", {"product": "demo", "user": "c"}))[0] == 200
    assert (await api.register("d"))[0] == 200
    assert (await api.license())["seats_in_use"] == 1


async def test_counters_survive_a_new_file(api: Api) -> None:
    token = await admin_token(api)
    consume = {"product": "demo", "user": "u", "feature": "render", "consumptions": 7}
    assert (await api.post("/api/v4/add_feature_consumption", consume))[0] == 200
    more = demo_licenses()
    more[0]["features"][1]["max_consumption"] = 500
    assert (await import_file(api, signed_file(more), token))[0] == 201
    [render] = [f for f in (await api.license())["features"] if f["code"] == "render"]
    assert (render["consumption"]["total"], render["consumption"]["included"]) == ("7", "500")


async def test_a_file_that_expires_while_serving_stops_being_served(api: Api) -> None:
    from structlog.testing import capture_logs

    from tests.polling import wait_until

    token = await admin_token(api)
    end = api.clock.now() + timedelta(hours=1)
    assert (await import_file(api, signed_file(OTHER, series="trial", expires_at=end), token))[0] == 201
    assert (await api.post("/api/v4/register", {"product": "other", "user": "u"}))[0] == 200
    assert (await api.license(2002))["validity_period"] == end.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    status, ready = await api.get("/readyz")
    assert ready["checks"]["license_files"]["expiring_soon"][0]["file_id"].startswith("trial-")
    with capture_logs() as logs:
        api.clock.advance(timedelta(hours=1, seconds=1))
        status, body = await api.post("/api/v4/register", {"product": "other", "user": "u"})
        assert (status, body["code"]) == (400, "license_expired")

        async def logged() -> bool:
            return any(e["event"] == "license_file_expired" for e in logs)

        await wait_until(logged, 10)
    status, ready = await api.get("/readyz")
    assert status == 200 and ready["checks"]["license_files"]["status"] == "warning"
    assert ready["checks"]["license_files"]["expired"][0].startswith("trial-")
    assert (await api.register("still-fine"))[0] == 200  # other files' licenses are unaffected


# --- where entitlements come from is said everywhere ---


async def test_unsigned_inline_licenses_are_flagged_everywhere(api_factory: Any, floatsrv_upstream: Any) -> None:
    upstream, url = floatsrv_upstream

    def with_upstream(data: dict[str, Any]) -> None:
        data["sync"] = {
            "interval_seconds": 3600,
            "upstreams": [{"name": "vendor", "url": url, "token": "upstream-token"}],
        }

    with capture_logs() as logs:
        api = await api_factory(with_upstream, signed=False)
    [started] = [entry for entry in logs if entry["event"] == "unsigned_licenses_in_use"]
    assert started["licenses"] == [1001] and started["log_level"] == "warning" and "!!!" in started["message"]
    assert (await api.license())["entitlements"] == "unsigned"
    status, ready = await api.get("/readyz")
    assert status == 200 and ready["checks"]["entitlements"] == {
        "status": "warning",
        "signed": 0,
        "unsigned": [1001],
        "demo": [],
        "message": ready["checks"]["entitlements"]["message"],
    }
    token = await admin_token(api)
    async with api.client.get("/metrics", headers=api.headers(token)) as resp:
        text = await resp.text()
    assert 'floatsrv_licenses_by_entitlements{entitlements="unsigned"} 1.0' in text
    consume = {"product": "demo", "user": "u", "feature": "render", "consumptions": 2}
    assert (await api.post("/api/v4/add_feature_consumption", consume, token=token))[0] == 200
    assert (await api.post("/v1/sync/run", {}, token=token))[0] == 200
    assert upstream.entitlements == ["unsigned"]
    # `floatsrv status` beside the server: the terms line counts it, and a warning names it.
    shown = await api.cli("status")
    assert shown.returncode == 0, shown.stderr
    assert "terms:     0 vendor-signed, 0 demo-signed, 1 unsigned (inline YAML)" in shown.stdout, shown.stdout
    assert "licenses [1001] are not signed by the vendor" in shown.stdout, shown.stdout
    # The air-gapped usage report says it too.
    report = api.config.storage.data_dir.parent / "usage.fsr"
    exported = await api.cli("usage", "export", "--out", str(report))
    assert exported.returncode == 0 and "wrote 1 records" in exported.stdout, (exported.stdout, exported.stderr)
    payload = json.loads(report.read_bytes().split(b"\n")[1])
    assert payload["entitlements"] == "unsigned", payload
    assert [record["entitlements"] for record in payload["records"]] == ["unsigned"], payload


async def test_a_config_without_license_files_reads_licenses_beside_it(tmp_path: Any) -> None:
    """`license_files:` left out: the `licenses/` directory beside the config file (not the working directory,
    which here is the checkout with the demo file in its own licenses/)."""
    import yaml

    from floatsrv.config import load_config
    from tests.conftest import example_dict, start_api

    etc = tmp_path / "etc"
    (etc / "licenses").mkdir(parents=True)
    (etc / "licenses" / "site.lic").write_text(signed_file(OTHER, series="site", file_id="site-1"))
    data = example_dict()
    del data["licenses"]
    assert "license_files" not in data
    data["storage"]["data_dir"] = str(tmp_path / "data")
    (etc / "floatsrv.yaml").write_text(yaml.safe_dump(data))
    config = load_config(etc / "floatsrv.yaml")
    assert config.license_files == [etc / "licenses"]
    api, client = await start_api(config)
    try:
        await api.login()
        assert (await api.license(2002))["license_file"] == "site-1"
        assert (await api.get("/v1/licenses/1001"))[0] == 404  # nothing from ./licenses/demo.lic
    finally:
        await client.close()


async def test_demo_signed_licenses_are_flagged_as_demo(api: Api, floatsrv_upstream: Any) -> None:
    status, ready = await api.get("/readyz")
    assert ready["checks"]["entitlements"]["demo"] == [1001] and ready["checks"]["entitlements"]["unsigned"] == []
    assert (await api.license())["entitlements"] == "demo"


# --- a vendor build: every way to raise an entitlement goes through the vendor ---


async def test_vendor_build_attaches_and_applies_only_what_a_signed_file_grants(api_factory: Any) -> None:
    vendor = Ed25519PrivateKey.generate()
    api: Api = await api_factory(signed=False, trust=vendor_trust(vendor), mutate=lambda d: d.update(licenses=[]))
    token = await admin_token(api)
    data: dict[str, Any] = {"auth": {"users": []}}
    data["licenses"] = demo_licenses()
    metering_license(data)
    grant = {
        "id": "api-plus-5",
        "name": "API +5",
        "feature": "api",
        "consumption_model": "metered",
        "included_units": 5,
    }
    data["licenses"][0]["addons"] = [grant]
    data["licenses"][0]["credit_grants"] = [{"id": "credits-2026-01", "amount": "40", "note": "January"}]
    status, body = await import_file(api, signed_file(data["licenses"], key=vendor), token)
    assert status == 201 and body["data"]["entitlements"] == "signed", body

    made = {"name": "More", "feature": "api", "consumption_model": "metered", "included_units": 50}
    status, body = await api.post("/v1/addons", made, token=token)
    assert (status, body["error"]["code"]) == (403, "not_granted_by_vendor")
    status, body = await api.post("/v1/licenses/1001/credits", {"amount": "100"}, token=token)
    assert (status, body["error"]["code"]) == (403, "not_granted_by_vendor")
    status, body = await api.post("/v1/licenses/1001/credits", {"grant_id": "credits-2099"}, token=token)
    assert (status, body["error"]["code"]) == (403, "not_granted_by_vendor")

    [addon] = (await api.get("/v1/addons", token=token))[1]["data"]["data"]
    assert (addon["id"], addon["granted"], addon["included_units"]) == ("api-plus-5", True, 5)
    status, body = await api.post("/v1/licenses/1001/addons", {"addon_id": "api-plus-5"}, token=token)
    assert status == 200, body
    status, body = await api.post("/v1/usage/check", {"license_id": 1001, "feature": "api", "quantity": 1}, token=token)
    assert body["data"]["included"] == "15"
    status, body = await api.post("/v1/licenses/1001/credits", {"grant_id": "credits-2026-01"}, token=token)
    assert status == 200 and body["data"]["purchased_credits"] == "40", body
    status, body = await api.post("/v1/licenses/1001/credits", {"grant_id": "credits-2026-01"}, token=token)
    assert (status, body["error"]["code"]) == (409, "credit_grant_already_applied")
    async with api.client.put(f"/v1/addons/{addon['id']}", json=made, headers=api.headers(token)) as resp:
        assert resp.status == 403

    # The next file no longer grants the add-on: its activation ends with it.
    data["licenses"][0]["addons"] = []
    assert (await import_file(api, signed_file(data["licenses"], key=vendor), token))[0] == 201
    assert (await api.get("/v1/licenses/1001/addons", token=token))[1]["data"]["data"] == []
    assert (await api.get("/v1/addons", token=token))[1]["data"]["data"] == []


async def test_repository_build_keeps_admin_addons_and_credits(api_factory: Any) -> None:
    api: Api = await api_factory(metering_license)
    token = await admin_token(api)
    made = {"name": "More", "feature": "api", "consumption_model": "metered", "included_units": 50}
    assert (await api.post("/v1/addons", made, token=token))[0] == 200
    assert (await api.post("/v1/licenses/1001/credits", {"amount": "100"}, token=token))[0] == 200


async def test_a_granted_addon_attaches_only_where_granted(api_factory: Any) -> None:
    def two_licenses(data: dict[str, Any]) -> None:
        metering_license(data)
        grant = {"id": "api-plus-5", "name": "API +5", "feature": "api", "consumption_model": "metered"}
        data["licenses"][0]["addons"] = [{**grant, "included_units": 5}]
        data["licenses"].append({**data["licenses"][0], "id": 2002, "product": "other", "addons": []})

    api: Api = await api_factory(two_licenses)
    token = await admin_token(api)
    status, body = await api.post("/v1/licenses/2002/addons", {"addon_id": "api-plus-5"}, token=token)
    assert (status, body["error"]["code"]) == (403, "not_granted_by_vendor")
    assert (await api.post("/v1/licenses/1001/addons", {"addon_id": "api-plus-5"}, token=token))[0] == 200


async def test_a_stored_file_that_no_longer_verifies_is_not_served(api_factory: Any, tmp_path: Any) -> None:
    """The database is the customer's: a file edited in it stops counting at the next start."""
    import sqlite3

    from tests.conftest import make_config, start_api

    config = make_config(tmp_path / "edited")
    api, client = await start_api(config)
    token = await admin_token(api)
    assert (await import_file(api, signed_file(OTHER, series="plant", file_id="plant-1"), token))[0] == 201
    await client.close()
    with sqlite3.connect(config.db_path) as conn:
        text = conn.execute("SELECT text FROM license_files WHERE file_id = 'plant-1'").fetchone()[0]
        fields = envelope_fields(text)
        fields["payload"] = fields["payload"].replace(b'"floating_users": 2', b'"floating_users": 200')
        conn.execute("UPDATE license_files SET text = ? WHERE file_id = 'plant-1'", (rewrap(fields),))
        conn.execute("UPDATE licenses SET definition = json_set(definition, '$.floating_users', 200) WHERE id = 2002")
    api, client = await start_api(config)
    try:
        await api.login()
        assert (await api.get("/v1/licenses/2002"))[0] == 404
        status, ready = await api.get("/readyz")
        assert "license_file_signature_invalid" in ready["checks"]["license_files"]["not_served"][0]
    finally:
        await client.close()


def test_sequences_increase_across_the_session() -> None:
    assert next_sequence() < next_sequence()


# --- the demo ---


def test_the_demo_file_carries_exactly_the_demo_license() -> None:
    from floatsrv.entitlements.issue import validated
    from floatsrv.entitlements.trust import load_trust_anchor
    from floatsrv.entitlements.verify import open_file
    from tests.licensing import DEMO_FILE

    opened = open_file(DEMO_FILE.read_text(), load_trust_anchor())
    assert (opened.entitlements, opened.bound_to, opened.file_id, opened.payload.expires_at) == (
        "demo",
        None,
        "demo-1001",
        None,
    )
    assert opened.payload.licenses == validated(demo_licenses())


@pytest.mark.slow
def test_the_example_config_serves_the_demo_license_from_the_demo_file(tmp_path: Any) -> None:
    import shutil

    from tests.conftest import EXAMPLE, ROOT
    from tests.procs import ServerProcess

    server = ServerProcess(tmp_path, signed=False)
    shutil.copy(EXAMPLE, server.config_path)  # the example exactly, with the licenses/ directory beside it
    shutil.copytree(ROOT / "licenses", tmp_path / "licenses")
    server.start()
    try:
        token = server.token()
        status, view = server.request("GET", "/v1/licenses/1001", token=token)
        assert status == 200 and (view["data"]["entitlements"], view["data"]["license_file"]) == ("demo", "demo-1001")
        assert (view["data"]["floating_users"], view["data"]["product"]) == (3, "demo")
        status, body = server.request("POST", "/api/v4/register", {"product": "demo", "user": "w7"}, token)
        assert status == 200, body
        listed = server.cli("license", "list", "--json")
        assert [row["file_id"] for row in __import__("json").loads(listed.stdout)] == ["demo-1001"]
        status_out = server.cli("status")
        assert "1 demo-signed" in status_out.stdout, status_out.stdout + status_out.stderr
    finally:
        assert server.stop() == 0


def test_the_published_json_schemas_describe_the_format() -> None:
    import jsonschema

    from floatsrv.entitlements.payload import json_schema
    from tests.conftest import ROOT
    from tests.licensing import DEMO_FILE

    docs = ROOT / "docs"
    payload_schema = json.loads((docs / "license-file-payload.schema.json").read_text())
    assert payload_schema == json_schema()  # regenerate: python -m floatsrv.entitlements.payload
    envelope_schema = json.loads((docs / "license-file-envelope.schema.json").read_text())
    envelope = json.loads(dearmour(DEMO_FILE.read_text()))
    jsonschema.validate(envelope, envelope_schema)
    jsonschema.validate(json.loads(base64.b64decode(envelope["payload"])), payload_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**envelope, "alg": "rs256"}, envelope_schema)
