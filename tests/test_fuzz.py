"""Property-based fuzzing of both OpenAPI documents against a real floatsrv process (schemathesis).

For each document (`/api/v4/openapi.json`, `/v1/openapi.json`) a fresh server is started on a temporary data
dir and schemathesis drives every operation in it over real HTTP, with valid and invalid inputs: the
documents' examples, the coverage phase (boundary values, each constraint broken in turn, missing
parameters, missing or wrong credentials, wrong methods and content types) and hypothesis-generated cases,
with a fixed seed and derandomized generation so a run is repeatable. Every response must pass:

- schemathesis's checks: no 5xx, documented status codes, content types, headers and response schemas,
  invalid input rejected, credentials enforced, undocumented methods answered 405;
- `error_bodies_are_stable`: every 4xx (and any 5xx) is JSON in the surface's error shape, with the HTTP
  status in it and a code that floatsrv defines (docs/errors.md);
- `valid_input_passes_validation`: a request the document calls valid is never refused as malformed
  (`validation_error`, `missing_parameters`, `invalid_json`, `unsupported_media_type`), so the documents
  are as strict as the server; domain refusals (unknown product, no free seat, ...) are fine;
- `license_json_is_a_license`: the license object inside /register's `license_json` string conforms too.

The admin's and demo's tokens come from `GET /auth`; a 401 mid-run (the v1 run rotates the signing key and
revokes tokens) logs in again and replays the request.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.configuration
import jsonschema
import pytest
import requests
import schemathesis
from schemathesis.engine import Status, StopReason, events, from_schema
from schemathesis.engine.run import PhaseName

from floatsrv import errors
from tests.conftest import Api, basic, example_dict
from tests.procs import ServerProcess

SEED = 20260517
MAX_EXAMPLES = 40  # per operation and phase: what bounds a run (and keeps it repeatable)
# A safety net against a hung run, not a speed bound: a run takes 12-30 s on 2 cores, and a loaded CI
# machine can be several times slower. (Schemathesis's own `max-time` is not used: with it, the engine
# keeps fuzzing until the time is up, so a run would depend on the machine's speed.)
TIME_LIMIT = 300  # seconds per document
LOGIN = {"v4": ("demo", "demo-password"), "v1": ("admin", "admin-password")}
HTTP_METHODS = {"get", "put", "post", "delete", "patch"}

# Codes floatsrv defines (docs/errors.md): the domain error tree, plus routing and internal errors.
_HTTP_CODES = {"not_found", "method_not_allowed", "payload_too_large", "http_error", "internal_error"}
# The codes of a request refused before any domain logic: valid input per the document must never get them.
_MALFORMED = {"validation_error", "missing_parameters", "invalid_json", "unsupported_media_type"}
_CODE = re.compile(r"^[a-z][a-z_]*$")


def _error_codes(cls: type[errors.FloatsrvError] = errors.FloatsrvError) -> set[str]:
    return {cls.code, *(code for sub in cls.__subclasses__() for code in _error_codes(sub))}


KNOWN_CODES = _error_codes() | _HTTP_CODES


def _is_native(case: schemathesis.Case[Any]) -> bool:
    return bool(case.operation.path.startswith("/v1/"))


def _error_code(case: schemathesis.Case[Any], response: schemathesis.Response) -> str:
    """The stable code of an error response, after checking the surface's error shape."""
    media_type = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    assert media_type == "application/json", f"{response.status_code} answered with {media_type!r}, not JSON"
    body = json.loads(response.content)
    if _is_native(case):
        assert isinstance(body, dict) and body.get("success") is False, body
        error = body.get("error")
        assert isinstance(error, dict) and isinstance(error.get("message"), str), body
        code = error.get("code")
    else:
        assert isinstance(body, dict) and set(body) == {"status", "code", "message"}, body
        assert body["status"] == response.status_code and isinstance(body["message"], str), body
        code = body["code"]
    assert isinstance(code, str) and _CODE.match(code) and code in KNOWN_CODES, f"unknown error code {code!r}"
    return code


@schemathesis.check
def error_bodies_are_stable(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    if response.status_code >= 400:
        _error_code(case, response)
    return None


@schemathesis.check
def valid_input_passes_validation(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in (400, 415):
        return None
    code = _error_code(case, response)
    assert code not in _MALFORMED, f"a request valid per the document was refused as {code}: {response.text[:300]}"
    return None


@schemathesis.check
def license_json_is_a_license(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """`license_json` of /register is a JSON string; JSON Schema cannot look inside it (`contentSchema` is an
    annotation), so parse it and check it against the document's License schema here."""
    if case.operation.path != "/api/v4/register" or response.status_code != 200:
        return None
    components = case.operation.schema.raw_schema["components"]
    validator = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/License", "components": components},
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    validator.validate(json.loads(json.loads(response.content)["license_json"]))
    return None


def login_provider(base_url: str, username: str, password: str) -> type:
    """An auth provider: bearer tokens from `GET /auth`, fetched again (and the request replayed) after a 401."""

    class Login:
        def get(self, case: schemathesis.Case[Any], ctx: schemathesis.AuthContext) -> str:
            resp = requests.get(f"{base_url}/auth", headers={"Authorization": basic(username, password)}, timeout=10)
            assert resp.status_code == 200, resp.text
            token: str = resp.json()["token"]
            return token

        def set(self, case: schemathesis.Case[Any], data: str, ctx: schemathesis.AuthContext) -> None:
            # The login itself takes HTTP Basic; everything else the token.
            header = basic(username, password) if case.operation.path == "/auth" else f"Bearer {data}"
            headers: dict[str, Any] = dict(case.headers or {})
            case.headers = {**headers, "Authorization": header}  # type: ignore[assignment]

    return Login


def fuzz_config(base_url: str) -> schemathesis.Config:
    # Positive data acceptance: the statuses a valid request may still get. /api/v4 refuses domain
    # problems with 400 (as LicenseSpring does); /v1 with 404/409/422. `valid_input_passes_validation`
    # makes sure none of those 400s is a validation failure.
    accepted = ["2xx", "400", "401", "403", "404", "409", "422", "429", "503"]
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": base_url,
            "request-timeout": 10,
            "workers": 1,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "phases": {"stateful": {"max-steps": 10}},
            "checks": {"positive_data_acceptance": {"expected-statuses": accepted}},
        }
    )


@pytest.fixture(params=["v4", "v1"])
def document(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, ServerProcess]]:
    config = example_dict()
    # Logins must keep working when the fuzzer has sent wrong passwords to GET /auth.
    config["auth"]["login_throttle"].update(max_failures_per_address=10**6, max_failures_per_user=10**6)
    config["log"]["level"] = "warning"
    server = ServerProcess(tmp_path, config)
    server.start()
    # Hypothesis's caches go to the temporary dir, not to .hypothesis/ in the working tree.
    hypothesis.configuration.set_hypothesis_home_dir(tmp_path / "hypothesis")
    try:
        yield request.param, server
    finally:
        hypothesis.configuration.set_hypothesis_home_dir(None)
        server.stop()


def _failures(event: events.EngineEvent) -> Iterator[str]:
    if isinstance(event, events.ScenarioFinished):
        for checks in event.recorder.checks.values():
            for check in checks:
                if check.status == Status.FAILURE and check.failure_info is not None:
                    failure = check.failure_info.failure
                    step = check.failure_info.steps[-1].curl if check.failure_info.steps else ""
                    yield f"{failure.operation} [{check.name}] {failure.title}: {failure.message}\n{step}"
    elif isinstance(event, events.NonFatalError | events.FatalError):
        yield f"{type(event).__name__}: {event}"


@pytest.mark.slow
def test_fuzz(document: tuple[str, ServerProcess]) -> None:
    name, server = document
    # Loaded from the server, but as a dict: schemathesis leaves out the operation a schema was loaded from.
    raw = requests.get(f"{server.url}/{'api/v4' if name == 'v4' else 'v1'}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(raw, config=fuzz_config(server.url))
    schema.auth(refresh_interval=3600)(login_provider(server.url, *LOGIN[name]))

    started = time.monotonic()
    found: list[str] = []
    statuses: Counter[int] = Counter()
    checks: Counter[str] = Counter()
    operations: set[str] = set()
    finished: events.EngineFinished | None = None
    stream = from_schema(schema).execute()
    for event in stream:
        if time.monotonic() - started > TIME_LIMIT:
            stream.stop()
        found.extend(_failures(event))
        if isinstance(event, events.ScenarioFinished):
            checks.update(check.name for nodes in event.recorder.checks.values() for check in nodes)
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    statuses[interaction.response.status_code] += 1
            if event.phase != PhaseName.STATEFUL_TESTING:
                operations.add(event.recorder.label)
        if isinstance(event, events.EngineFinished):
            finished = event
            found.extend(f"{f.operation}: {f.title}: {f.message}" for f in event.failures)
    elapsed = time.monotonic() - started
    reauth = finished.payload.reauth_count if finished is not None and finished.payload is not None else 0
    requests_sent = sum(statuses.values())
    print(f"\n{name}: {requests_sent} requests to {len(operations)} operations in {elapsed:.1f}s, {reauth} re-logins")
    print(f"statuses: {dict(sorted(statuses.items()))}")
    print(f"checks: {dict(sorted(checks.items()))}")

    assert finished is not None
    assert finished.stop_reason == StopReason.COMPLETED, f"stopped early ({finished.stop_reason}) after {elapsed:.0f}s"
    assert not found, "\n\n".join(dict.fromkeys(found))
    assert not any(status >= 500 for status in statuses), statuses
    documented = {
        f"{method.upper()} {path}" for path, item in raw["paths"].items() for method in item if method in HTTP_METHODS
    }
    assert operations == documented, documented ^ operations


# Regressions: what the fuzzer found, pinned as plain examples (each was a 500 or a wrong answer before).


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/api/v4/register", rb'{"product": "demo", "user": "\ud800"}'),
        ("/api/v4/register", rb'{"product": "demo", "user": "a", "os_hostname": "x\udfff"}'),
        ("/api/v4/featureRelease", rb'{"product": "demo", "feature": "export", "user": "\uDBFF"}'),
        ("/api/v4/add_consumption", rb'{"product": "demo", "consumptions": 1, "user": "\ud83d"}'),
        ("/api/v4/register", rb'{"product": "demo", "user": "a", "\udc00": [["\ud800"]]}'),
    ],
)
async def test_lone_surrogates_are_invalid_json(api: Api, path: str, raw: bytes) -> None:
    status, body = await api.post(path, None, raw=raw)
    assert (status, body["code"]) == (400, "invalid_json"), body
    # A proper pair (an emoji, escaped) is fine.
    status, body = await api.post("/api/v4/register", None, raw=rb'{"product": "demo", "user": "\ud83d\udda5"}')
    assert status == 200, body
    assert [seat["user"] for seat in await api.seats()] == ["\U0001f5a5"]


async def test_only_ascii_digits_are_numbers(api: Api) -> None:
    status, body = await api.register("a", license_id="\u0661\u0660\u0660\u0661")  # Arabic-Indic 1001
    assert (status, body["code"]) == (400, "validation_error"), body
    status, body = await api.get("/api/v4/unregister/all", params={"license_id": "\uff11\uff10\uff10\uff11"})
    assert (status, body["code"]) == (400, "validation_error"), body


async def test_non_ascii_bearer_tokens_are_invalid(api: Api) -> None:
    host, port = api.client.server.host, api.client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    # Raw bytes: HTTP clients refuse to send a header that is not valid text.
    writer.write(b"GET /api/v4/license HTTP/1.1\r\nHost: x\r\nConnection: close\r\n")
    writer.write(b"Authorization: Bearer \xff\xfe\r\n\r\n")
    reply = await reader.read()
    writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 ") and json.loads(body)["code"] == "invalid_token", reply


async def test_admin_inputs_out_of_range(api: Api) -> None:
    admin = await api.login("admin", "admin-password")
    addon = {"name": "x", "feature": "render", "consumption_model": "metered", "overage_rate": 1.5e308}
    for method, path in (("POST", "/v1/addons"), ("PUT", "/v1/addons/missing")):
        async with api.client.request(method, path, json=addon, headers=api.headers(admin)) as resp:
            body = await resp.json()
        assert (resp.status, body["error"]["code"], body["error"]["param"]) == (400, "validation_error", "overage_rate")
    status, body = await api.post("/v1/seats/2818183288486931004898934784/revoke", {}, token=admin)
    assert (status, body["error"]["code"]) == (404, "seat_not_found"), body
    async with api.client.patch("/v1/users/demo", json={"disabled": 0}, headers=api.headers(admin)) as resp:
        body = await resp.json()
    assert (resp.status, body["error"]["code"], body["error"]["param"]) == (400, "validation_error", "disabled")
