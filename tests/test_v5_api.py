"""/api/v5 over real HTTP to an in-process server on a real SQLite file, with a real certificate chain: every
success signed over its exact bytes, the v1 error shapes and codes, shared logins and seats, opt-in only,
licenses whose values a signed reply cannot carry refused when loaded, no accepted request able to make a reply
unsignable (every integer a reply carries stays within 2**53-1), and tokens revoked by a password change."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from floatsrv import jsjson
from floatsrv.appkeys import DOMAIN
from floatsrv.config import ConfigError
from floatsrv.domain.consumption import ConsumeRequest, add_consumption
from floatsrv.domain.seats import Target
from floatsrv.entitlements.fileformat import dearmour, parse_envelope, sign
from floatsrv.entitlements.trust import load_trust_anchor
from floatsrv.entitlements.verify import open_file
from floatsrv.errors import LicenseFilePayloadInvalid
from floatsrv.v5chain import make_chain
from tests.conftest import Api, example_dict, floatsrv_cli, make_config
from tests.licensing import demo_key, demo_licenses, signed_file

Factory = Callable[..., Any]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_chain(tmp_path_factory.mktemp("chain"))


def enable(chain: tuple[Path, Path]) -> Callable[[dict[str, Any]], None]:
    chain_pem, key = chain

    def mutate(data: dict[str, Any]) -> None:
        data["api_v5"] = {"enabled": True, "signing_key": str(key), "certificate_chain": str(chain_pem)}

    return mutate


def leaf_key(chain: tuple[Path, Path]) -> rsa.RSAPublicKey:
    leaf = x509.load_pem_x509_certificates(chain[0].read_bytes())[0]
    key = leaf.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


class V5:
    """Raw requests to /api/v5 that keep the reply's bytes and check its signature."""

    def __init__(self, api: Api, key: rsa.RSAPublicKey) -> None:
        self.api, self.key, self.token = api, key, None

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        chosen = token or self.token
        if chosen:
            headers["Authorization"] = f"Bearer {chosen}"
        data = None if body is None else json.dumps(body).encode()
        async with self.api.client.request(method, f"/api/v5{path}", data=data, headers=headers) as resp:
            raw = await resp.read()
            if resp.status == 200:
                signature = base64.b64decode(resp.headers["LicenseSignature"], validate=True)
                self.key.verify(signature, raw, padding.PKCS1v15(), hashes.SHA256())  # raises if wrong
                if resp.content_type == "application/json":
                    assert jsjson.encode(json.loads(raw)) == raw  # the encoder's own bytes: compact, UTF-8
            else:
                assert "LicenseSignature" not in resp.headers
            if resp.content_type == "application/json":
                return resp.status, json.loads(raw)
            return resp.status, raw.decode()

    async def login(self, username: str = "demo", password: str = "demo-password") -> dict[str, Any]:
        status, body = await self.call("POST", "/auth/login", {"username": username, "password": password})
        assert status == 200, body
        self.token = body["token"]
        return dict(body)


async def v5_api(
    api_factory: Factory, chain: tuple[Path, Path], mutate: Any = None, *, signed: bool = True, subdir: str = ""
) -> V5:
    def both(data: dict[str, Any]) -> None:
        enable(chain)(data)
        if mutate:
            mutate(data)

    return V5(await api_factory(both, signed=signed, subdir=subdir), leaf_key(chain))


async def test_every_endpoint_answers_signed(api_factory: Factory, chain: tuple[Path, Path]) -> None:
    v5 = await v5_api(api_factory, chain)
    assert (await v5.call("GET", "/ping")) == (200, {"message": "pong", "version": "v5"})
    login = await v5.login()
    assert login["expires_in"] > 0 and login["expires_at"].endswith("Z") and login["role"] == "user"
    assert (await v5.call("GET", "/auth/me"))[1]["username"] == "demo"
    status, refreshed = await v5.call("POST", "/auth/refresh")
    assert status == 200 and refreshed["token"] != v5.token
    v5.token = refreshed["token"]  # the refreshed token works

    status, listed = await v5.call("GET", "/license?demo")  # the Python SDK's bare `?<product>`
    assert status == 200 and [lic["id"] for lic in listed] == [1001]
    assert (await v5.call("GET", "/license?product=nope"))[1]["code"] == "unknown_product"
    status, lic = await v5.call("GET", "/license/1001")
    assert status == 200 and lic["product_details"]["short_code"] == "demo"

    # Keys in any letter case (Go's decoder), nulls and "" as absent (the Python SDK sends nulls).
    body = {"Username": "hw-1", "email": None, "ip_local": None, "user_info": "", "os_hostname": "cad-7"}
    status, registered = await v5.call("POST", "/license/1001/user/register", body)
    assert status == 200 and registered["floating_in_use_devices"] == 1 and registered["id"] == 1001
    status, users = await v5.call("GET", "/license/1001/user")
    assert [(u["username"], u["os_hostname"]) for u in users] == [("hw-1", "cad-7")]

    status, feature = await v5.call("POST", "/license/1001/feature/register", {"username": "hw-1", "feature": "export"})
    assert status == 200 and feature["code"] == "export" and feature["floating_in_use_devices"] == 1
    assert [f["feature"] for f in (await v5.call("GET", "/license/1001/feature"))[1]] == ["export"]
    assert await v5.call("POST", "/license/1001/feature/release", {"username": "hw-1", "feature": "export"}) == (
        200,
        "feature_released",
    )
    await v5.call("POST", "/license/1001/feature/register", {"username": "hw-1", "feature": "export"})
    assert (await v5.call("POST", "/license/1001/feature/release_all"))[0] == 200
    assert (await v5.call("GET", "/license/1001/feature"))[1] == []

    status, used = await v5.call("POST", "/license/1001/consumption/add", {"username": "hw-1", "consumptions": 4})
    assert status == 200 and used["total_consumptions"] == 4
    status, used = await v5.call(
        "POST", "/license/1001/consumption/feature/add", {"username": "hw-1", "feature": "render", "consumptions": 2}
    )
    assert status == 200 and used["total_consumptions"] == 2

    status, borrowed = await v5.call("POST", "/license/1001/user/borrow", {"username": "hw-1"})
    assert status == 200 and borrowed["is_borrowed"] is True
    assert await v5.call("POST", "/license/1001/user/unregister", {"username": "hw-1"}) == (200, "user_unregistered")
    await v5.call("POST", "/license/1001/user/register", {"username": "hw-2"})
    assert await v5.call("GET", "/unregister/all") == (200, "")
    assert (await v5.call("GET", "/license/1001/user"))[1] == []

    # Admin only: the user list, adding a user, every seat of a license.
    for method, path in (("GET", "/auth/users"), ("POST", "/license/1001/user/unregister_all")):
        status, refused = await v5.call(method, path)
        assert (status, refused["code"]) == (403, "forbidden"), (path, refused)
    await v5.login("admin", "admin-password")
    status, users = await v5.call("GET", "/auth/users")
    assert status == 200 and {"admin", "demo"} <= {u["username"] for u in users}
    assert (await v5.call("POST", "/license/1001/user/unregister_all"))[0] == 200


async def test_the_license_id_in_the_path_is_digits(api_factory: Factory, chain: tuple[Path, Path]) -> None:
    v5 = await v5_api(api_factory, chain)
    await v5.login()
    for bad in ("None", "0", "-1", "1e3", "１２", "1001x", "99999999999999999999"):
        status, body = await v5.call("POST", f"/license/{bad}/user/register", {"username": "u"})
        assert (status, set(body), body["code"]) == (400, {"status", "code", "message"}, "invalid_license_id"), bad
    status, body = await v5.call("POST", "/license/4242/user/register", {"username": "u"})
    assert (status, body["code"]) == (400, "license_not_found")
    status, body = await v5.call("POST", "/license/1001/user/register", {"email": "x@example.com"})
    assert (status, body["code"]) == (400, "missing_parameters")
    status, body = await v5.call("POST", "/license/1001/user/register", None)
    assert (status, body["code"]) == (400, "invalid_json")


async def test_off_by_default_every_v5_path_is_404(api: Api) -> None:
    for method, path in (("GET", "/api/v5/ping"), ("POST", "/api/v5/auth/login"), ("GET", "/api/v5/license")):
        async with api.client.request(method, path) as resp:
            assert resp.status == 404 and (await resp.json())["code"] == "not_found"


async def test_logins_share_throttling_and_the_temporary_password_flow(
    api_factory: Factory, chain: tuple[Path, Path]
) -> None:
    v5 = await v5_api(api_factory, chain)
    await v5.login("admin", "admin-password")
    status, added = await v5.call("POST", "/auth/add-user", {"username": "carol", "password": "first-Pass-123"})
    assert status == 200 and added["password_change_required"] is True and added["role"] == "user"
    login = await v5.login("carol", "first-Pass-123")
    assert login["password_change_required"] is True
    status, refused = await v5.call("POST", "/license/1001/user/register", {"username": "hw-c"})
    assert (status, refused["code"]) == (403, "password_change_required")
    assert (await v5.call("GET", "/auth/me"))[1]["password_change_required"] is True
    change = {"username": "carol", "old_password": "first-Pass-123", "new_password": "second-Pass-456"}
    status, changed = await v5.call("POST", "/auth/change-password", change)
    assert status == 200, changed
    v5.token = changed["token"]
    assert (await v5.call("POST", "/license/1001/user/register", {"username": "hw-c"}))[0] == 200
    # The v1 login sees the same password.
    await v5.api.login("carol", "second-Pass-456")

    # Wrong passwords over v5 count against the same throttle as GET /auth (5 per address in the example).
    for _ in range(5):
        status, _body = await v5.call("POST", "/auth/login", {"username": "demo", "password": "wrong-password"})
        assert status == 401
    status, body = await v5.call("POST", "/auth/login", {"username": "demo", "password": "demo-password"})
    assert (status, body["code"]) == (429, "too_many_requests")
    async with v5.api.client.get(
        "/auth", headers={"Authorization": "Basic " + base64.b64encode(b"demo:x").decode()}
    ) as resp:
        assert resp.status == 429 and "Retry-After" in resp.headers


async def test_unsignable_license_values_are_refused_when_loaded(
    api_factory: Factory, chain: tuple[Path, Path], tmp_path: Path
) -> None:
    def fractional(data: dict[str, Any]) -> None:
        data["licenses"][0]["metadata"] = {"tier": "gold", "ratio": 0.5}

    # Inline in the YAML: the server does not start, and says which field.
    with pytest.raises(ConfigError) as err:
        await v5_api(api_factory, chain, fractional, signed=False)
    assert "license 1001: metadata.ratio: the number 0.5 is not an integer" in "\n".join(err.value.lines)
    # From a license file: the file is refused (logged with the field), its license not served.
    v5 = await v5_api(api_factory, chain, fractional, subdir="file")
    await v5.login()
    assert await v5.call("GET", "/license") == (200, [])

    # `2.0` is the integer 2 to JavaScript: taken, and written as 2.
    def integral(data: dict[str, Any]) -> None:
        data["licenses"][0]["metadata"] = {"seats": 2.0, "region": "Zürich"}

    v5 = await v5_api(api_factory, chain, integral, subdir="ok")
    await v5.login()
    status, lic = await v5.call("GET", "/license/1001")
    assert lic["metadata"] == {"seats": 2, "region": "Zürich"}

    # A license file imported while v5 is on: refused with the field named, nothing imported.
    admin = await v5.api.login("admin", "admin-password")
    text = signed_file([{"id": 2002, "product": "other", "floating_users": 2, "metadata": {"7": "x"}}])
    status, body = await v5.api.post("/v1/license-files", {"license_file": text}, token=admin)
    assert (status, body["error"]["code"]) == (422, "license_file_unsignable"), body
    assert "license 2002: metadata" in body["error"]["message"]
    status, listed = await v5.call("GET", "/license")
    assert [lic["id"] for lic in listed] == [1001]


def test_serve_and_check_config_refuse_a_broken_chain(tmp_path: Path, chain: tuple[Path, Path]) -> None:
    chain_pem, key = chain
    certs = chain_pem.read_text().split("-----END CERTIFICATE-----")
    broken = tmp_path / "two.pem"
    broken.write_text("-----END CERTIFICATE-----".join(certs[:2]) + "-----END CERTIFICATE-----\n")
    data = example_dict()
    data["storage"]["data_dir"] = str(tmp_path / "data")
    data["api_v5"] = {"enabled": True, "signing_key": str(key), "certificate_chain": "two.pem"}  # relative
    config = tmp_path / "floatsrv.yaml"
    config.write_text(json.dumps(data))
    served = floatsrv_cli("serve", "--config", str(config), "--port", "0", timeout=60)
    assert served.returncode == 2, served.stderr
    assert "api_v5.certificate_chain" in served.stderr and "three" in served.stderr
    checked = floatsrv_cli("check-config", "--config", str(config))
    assert checked.returncode == 1 and "three" in checked.stderr

    data["api_v5"] = {"enabled": True}
    config.write_text(json.dumps(data))
    served = floatsrv_cli("serve", "--config", str(config), "--port", "0", timeout=60)
    assert served.returncode == 2 and "api_v5: signing_key and certificate_chain are required" in served.stderr


async def test_the_usage_policy_judges_v5_seats_too(api_factory: Factory, chain: tuple[Path, Path]) -> None:
    def policy(data: dict[str, Any]) -> None:
        data["policy"] = {
            "groups": {},
            "rules": [
                {"license": 1001, "exclude": ["user:mallory"], "timeout_minutes": 12},
                {"license": 1001, "feature": "export", "include": ["user:hw-1"]},
            ],
        }

    v5 = await v5_api(api_factory, chain, policy)
    await v5.login()
    status, refused = await v5.call("POST", "/license/1001/user/register", {"username": "mallory"})
    assert (status, refused["code"]) == (400, "floating_not_available") and refused["message"].startswith("excluded")
    status, refused = await v5.call("POST", "/license/1001/user/borrow", {"username": "mallory"})
    assert refused["message"].startswith("excluded")
    for user in ("hw-1", "hw-2"):
        status, registered = await v5.call("POST", "/license/1001/user/register", {"username": user})
        assert status == 200 and registered["floating_timeout"] == 12, registered
    assert (await v5.call("POST", "/license/1001/feature/register", {"username": "hw-1", "feature": "export"}))[
        0
    ] == 200
    status, refused = await v5.call("POST", "/license/1001/feature/register", {"username": "hw-2", "feature": "export"})
    assert refused["message"].startswith("not_included"), refused
    status, log = await v5.api.get("/v1/reports/denials", token=(await v5.api.login("admin", "admin-password")))
    assert [(i["user"], i["feature"], i["reason"]) for i in log["data"]["items"]] == [
        ("hw-2", "export", "not_included"),
        ("mallory", None, "excluded"),
        ("mallory", None, "excluded"),
    ]


MAX_SAFE = 2**53 - 1  # the largest integer JavaScript holds exactly
# The integers of a license a v5 reply carries, where they sit in the demo license (features: export, render).
SPEC_INTEGERS = [
    ((), "floating_users"),
    ((), "floating_timeout"),
    ((), "max_borrow_time"),
    ((), "max_consumptions"),
    ((), "max_overages"),
    (("features", 0), "floating_users"),
    (("features", 0), "floating_timeout"),
    (("features", 1), "max_consumption"),
    (("features", 1), "max_overages"),
]


def _set(license: dict[str, Any], where: tuple[Any, ...], field: str, value: int) -> str:
    """Sets the field in a license as the vendor writes it; returns its path as errors name it."""
    node, path = license, "licenses[0]"
    for key, index in zip(where[::2], where[1::2], strict=True):
        node, path = node[key][index], f"{path}.{key}[{index}]"
    node[field] = value
    return f"{path}.{field}"


@pytest.mark.parametrize(
    ("where", "field"), SPEC_INTEGERS, ids=[".".join(map(str, w + (f,))) for w, f in SPEC_INTEGERS]
)
def test_license_integers_beyond_javascript_are_refused_when_loaded(
    tmp_path: Path, chain: tuple[Path, Path], where: tuple[Any, ...], field: str
) -> None:
    """2**60 loaded once, and then a v5 reply carrying it could not be signed, after the request had acted."""
    named: list[str] = []

    def beyond(data: dict[str, Any]) -> None:
        enable(chain)(data)
        named.append(_set(data["licenses"][0], where, field, 2**60))

    # Inline in the YAML config: the server does not start, and says which field.
    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, beyond, signed=False)
    assert any(line.startswith(f"{named[0]}: must be at most ") for line in err.value.lines), err.value.lines
    # In a vendor-signed license file (signed as is; `floatsrv vendor issue` refuses to make it): refused too.
    licenses = demo_licenses()
    _set(licenses[0], where, field, 2**60)
    payload = json.loads(parse_envelope(dearmour(signed_file(demo_licenses()))).payload)
    payload["licenses"] = licenses
    with pytest.raises(LicenseFilePayloadInvalid) as refused:
        open_file(sign(json.dumps(payload).encode(), demo_key()), load_trust_anchor())
    assert field in str(refused.value) and "at most" in str(refused.value), refused.value


async def test_a_license_file_with_an_unsignable_integer_is_not_served(
    api_factory: Factory, chain: tuple[Path, Path], tmp_path: Path
) -> None:
    payload = json.loads(parse_envelope(dearmour(signed_file(demo_licenses()))).payload)
    payload["licenses"][0]["max_consumptions"] = 2**60
    text = sign(json.dumps(payload).encode(), demo_key())
    files = tmp_path / "files"
    files.mkdir()
    (files / "huge.lic").write_text(text)

    def from_the_file(data: dict[str, Any]) -> None:
        data.pop("licenses")
        data["license_files"] = [str(files)]

    v5 = await v5_api(api_factory, chain, from_the_file)
    await v5.login()
    assert await v5.call("GET", "/license") == (200, [])  # refused at start-up, not served
    status, body = await v5.call("GET", "/license/1001")
    assert (status, body["code"]) == (400, "license_not_found"), body
    admin = await v5.api.login("admin", "admin-password")
    status, body = await v5.api.post("/v1/license-files", {"license_file": text}, token=admin)
    assert (status, body["error"]["code"]) == (400, "license_file_payload_invalid"), body
    assert "max_consumptions" in body["error"]["message"], body


def at_the_bounds(data: dict[str, Any]) -> None:
    """License 1001 with every integer at its largest, overages and add-ons on top; 2002 unlimited."""
    demo = data["licenses"][0]
    demo.update(
        floating_users=MAX_SAFE, max_consumptions=MAX_SAFE, allow_overages=True, max_overages=MAX_SAFE,
        floating_timeout=525_600, max_borrow_time=87_600, can_borrow=True, metadata={"big": MAX_SAFE},
        plan_credits="999999999999999999",  # at 0.001 credit a unit: 10**21 units paid for
    )  # fmt: skip
    export, render = demo["features"]
    export.update(floating_users=MAX_SAFE, floating_timeout=525_600)
    render.update(max_consumption=MAX_SAFE, allow_overages=True, max_overages=MAX_SAFE)
    demo["features"].append({"code": "tokens", "consumption_model": "credits", "credits_per_unit": "0.001"})
    demo["addons"] = [
        {"id": "export-seats", "name": "Seats", "feature": "export", "consumption_model": "seats",
         "included_units": 10**9},
        {"id": "render-units", "name": "Units", "feature": "render", "consumption_model": "metered",
         "included_units": 10**9},
    ]  # fmt: skip
    unlimited = {"feature_type": "consumption", "allow_unlimited_consumptions": True}
    data["licenses"].append(
        {"id": 2002, "product": "other", "floating_users": 1, "license_type": "consumption",
         "allow_unlimited_consumptions": True, "features": [{"code": "meter", **unlimited}]}
    )  # fmt: skip


async def test_no_accepted_request_makes_a_v5_reply_unsignable(api_factory: Factory, chain: tuple[Path, Path]) -> None:
    v5 = await v5_api(api_factory, chain, at_the_bounds)
    admin = await v5.api.login("admin", "admin-password")
    for grant in ("export-seats", "render-units"):
        status, body = await v5.api.post("/v1/licenses/1001/addons", {"addon_id": grant}, token=admin)
        assert status == 200, body
    await v5.api.login()
    await v5.login()

    # Maxima made of several terms (seats + a seat add-on, units + an add-on, credits / their price) are shown
    # as at most 2**53-1: no total can pass that, so a larger maximum would mean nothing more.
    status, lic = await v5.call("GET", "/license/1001")  # every 200 is checked: signed over its exact bytes
    assert status == 200, lic
    features = {feature["code"]: feature for feature in lic["product_features"]}
    assert (lic["floating_users"], lic["max_consumptions"], lic["max_overages"]) == (MAX_SAFE,) * 3
    assert features["export"]["floating_users"] == MAX_SAFE
    assert features["render"]["max_consumption"] == features["tokens"]["max_consumption"] == MAX_SAFE
    body = {"username": "hw-1"}
    for path in ("/user/register", "/user/borrow"):
        assert (await v5.call("POST", f"/license/1001{path}", body))[0] == 200, path
    status, feature = await v5.call("POST", "/license/1001/feature/register", {**body, "feature": "export"})
    assert status == 200 and feature["floating_users"] == MAX_SAFE, feature

    # Totals: up to 2**53-1 is counted; one more is refused before it is recorded, on every surface.
    domain = v5.api.app[DOMAIN]
    for license_id, product, code in (
        (1001, "demo", None), (1001, "demo", "render"), (1001, "demo", "tokens"), (2002, "other", None),
        (2002, "other", "meter"),
    ):  # fmt: skip
        # What ~4 million requests of the most a client may send at once would add up to.
        await add_consumption(domain, ConsumeRequest(Target(None, license_id), MAX_SAFE - 5, code, "seed"))
        path = f"/license/{license_id}/consumption/" + ("feature/add" if code else "add")
        feature_field = {"feature": code} if code else {}
        status, used = await v5.call("POST", path, {"username": "hw-1", "consumptions": 5, **feature_field})
        assert status == 200 and used["total_consumptions"] == MAX_SAFE, (code, used)
        refused_code = "feature_not_enough_consumptions" if code else "license_not_enough_consumptions"
        status, refused = await v5.call("POST", path, {"username": "hw-1", "consumptions": 1, **feature_field})
        assert (status, refused["code"]) == (400, refused_code), (code, refused)
        v4_path = "/api/v4/add_feature_consumption" if code else "/api/v4/add_consumption"
        v4_body = {"product": product, "user": "hw-1", "consumptions": 1, **feature_field}
        status, refused = await v5.api.post(v4_path, v4_body)
        assert (status, refused["code"]) == (400, refused_code), (code, refused)
        if code:
            event = {"event_id": f"past-{code}", "license_id": license_id, "feature": code, "quantity": "0.001"}
            status, refused = await v5.api.post("/v1/usage/events", event)
            assert (status, refused["error"]["code"]) == (422, "limit_exceeded"), (code, refused)
        status, lic = await v5.call("GET", f"/license/{license_id}")
        assert status == 200, lic
        counted = lic if code is None else next(f for f in lic["product_features"] if f["code"] == code)
        assert counted["total_consumptions"] == MAX_SAFE, (code, counted)  # nothing of the refusals counted


async def test_a_token_revoked_by_a_password_change_gets_invalid_token(
    api_factory: Factory, chain: tuple[Path, Path]
) -> None:
    """An app's v5 session ends with its user's password: every call, the refresh the Python SDK makes every
    600 s included, gets 401 `invalid_token` (unsigned, v1's error shape) and does nothing."""
    v5 = await v5_api(api_factory, chain)
    api = v5.api
    admin = await api.login("admin", "admin-password")
    status, body = await api.post("/v1/users", {"username": "ann", "password": "anns-password"}, token=admin)
    assert status == 200, body
    first = V5(api, v5.key)
    await first.login("ann", "anns-password")  # a temporary password: changed first
    change = {"old_password": "anns-password", "new_password": "anns-password-2"}
    assert (await first.call("POST", "/auth/change-password", change))[0] == 200

    async def refused_everywhere(app: V5) -> None:
        calls = [
            ("POST", "/auth/refresh", None),
            ("GET", "/auth/me", None),
            ("GET", "/license", None),
            ("GET", "/license/1001", None),
            ("POST", "/license/1001/user/register", {"username": "hw-ann"}),
            ("POST", "/license/1001/consumption/add", {"username": "hw-ann", "consumptions": 1}),
        ]
        for method, path, body in calls:
            status, refused = await app.call(method, path, body)  # checks: no LicenseSignature on a refusal
            assert (status, set(refused), refused["code"]) == (401, {"status", "code", "message"}, "invalid_token"), (
                path,
                refused,
            )

    # The user's own change, over /v1 (another session of the same user).
    app = V5(api, v5.key)
    await app.login("ann", "anns-password-2")
    assert (await app.call("GET", "/license/1001"))[0] == 200  # the session works until then
    other = await api.login("ann", "anns-password-2")
    change = {"current_password": "anns-password-2", "new_password": "anns-password-3"}
    assert (await api.post("/v1/me/password", change, token=other))[0] == 200
    await refused_everywhere(app)
    # An admin's reset.
    await app.login("ann", "anns-password-3")
    assert (await api.post("/v1/users/ann/password", {"password": "anns-reset-pass"}, token=admin))[0] == 200
    await refused_everywhere(app)
    # Nothing was done by the refused calls: no seat, nothing counted.
    status, lic = await v5.call("GET", "/license/1001", token=(await V5(api, v5.key).login("demo"))["token"])
    assert status == 200 and (lic["floating_in_use_devices"], lic["total_consumptions"]) == (0, 0), lic
