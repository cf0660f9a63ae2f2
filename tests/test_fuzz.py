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

Hostile shapes (issue 17: each once made a 5xx with a traceback) are part of what the fuzzer generates: a
fuzzing-phase case may, as hypothesis draws it, carry one of them in a body field (any field, nested ones and a
new one included) or in a query parameter: numbers no decimal context can hold (`1e1000000000000000000`), integers
at and past 2^63 and 2^64, and strings with NUL or other control characters. JSON cannot carry such a number
from a Python value, so the drawn plan is applied to the request's bytes as it is sent (`HostileShapes`). The
run asserts that many were sent and none got a 5xx (a 5xx fails the run anyway).

The admin's and demo's tokens come from `GET /auth`; a 401 mid-run (the v1 run rotates the signing key and
revokes tokens) logs in again and replays the request.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis.configuration
import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation
from schemathesis.engine import Status, StopReason, events, from_schema
from schemathesis.engine.run import PhaseName
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER

from floatsrv import errors
from tests.conftest import Api, basic, example_dict
from tests.procs import ServerProcess

SEED = 20260517
MAX_EXAMPLES = 40  # per operation and phase: what bounds a run (and keeps it repeatable)
# A safety net against a hung run, not a speed bound: a run takes 12-30 s on 2 cores, and a loaded CI
# machine can be several times slower. (Schemathesis's own `max-time` is not used: with it, the engine
# keeps fuzzing until the time is up, so a run would depend on the machine's speed.)
TIME_LIMIT = 300  # seconds per document
MIN_HOSTILE = 50  # requests per document that carry a hostile shape (a run sends 100 to 150)
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
    if case.id in PLANNED:  # valid as generated, but sent with a hostile shape (HostileShapes)
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


# Hostile shapes, as the JSON text put in a body field: numbers no decimal context can hold, integers at and past
# 2^63 (SQLite's limit) and 2^64, the same as strings, and strings with NUL and other control characters.
HOSTILE_JSON = [
    "1e1000000000000000000",
    "-1e1000000000000000000",
    "1E+999999999",
    "1e-999999999",
    "[1e1000000000000000000]",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1" + "0" * 40,
    '"1e1000000000000000000"',
    '"9223372036854775808"',
    *(json.dumps(text) for text in ("eve\x00il", "\x00", "a\x01\x1f\x7fb", "line\r\nbreak")),
]
# ... and as a query parameter's value.
HOSTILE_QUERY = ["9223372036854775808", "-9223372036854775809", "18446744073709551616", "1e1000000000000000000"]
HOSTILE_QUERY += ["eve\x00il", "\x01\x7f"]
_SLOT = "\x00floatsrv-hostile-slot\x00"  # stands for the hostile text while the rest of the body is encoded

Plan = tuple[str, Any, str]  # ("body", path of keys and indexes, JSON text) or ("query", name, value)
PLANNED: set[str] = set()  # the ids of the cases sent with a hostile shape, in the run under way


def _slots(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Where a hostile value can go in a body: each field (two levels deep, list items included)."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value[:2]) if isinstance(value, list) else []
    for key, item in items:
        found.append((*prefix, key))
        if len(prefix) < 2:
            found += _slots(item, (*prefix, key))
    return found


def hostile_body(body: dict[str, Any], path: tuple[Any, ...], text: str) -> bytes | None:
    """`body` encoded as JSON with `text` (raw JSON) at `path`; None if the body is not plain JSON."""
    changed = copy.deepcopy(body)
    node: Any = changed
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = _SLOT
    try:
        encoded = json.dumps(changed, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return encoded.replace(json.dumps(_SLOT), text).encode()


class HostileShapes:
    """Hostile shapes in the fuzzer's cases. A schema-level `flatmap_case` hook lets hypothesis draw, for a share
    of the fuzzing phase's cases (positive and negative) whose credentials are intact, a plan: where the shape
    goes and which one. A `before_call` hook (schemathesis has it only globally: installed for one run) sends
    the case with its plan applied, and `after_call` keeps the statuses. A body plan replaces only the bytes
    sent; a query plan changes the case's query, which schemathesis then judges again. A planned case may get
    400 even when it was generated as valid: `valid_input_passes_validation` lets it (`PLANNED`); every other
    check, a 5xx above all, applies as to any case."""

    SHARE = {"positive": 3, "negative": 2}  # one case in N carries a shape

    def __init__(self) -> None:
        self.plans: dict[str, Plan] = {}
        self.sent = 0
        self.statuses: Counter[int] = Counter()
        self.server_errors: list[str] = []

    def _plan_for(self, case: schemathesis.Case[Any]) -> st.SearchStrategy[Plan] | None:
        options: list[st.SearchStrategy[Plan]] = []
        if isinstance(case.body, dict) and "json" in (case.media_type or ""):
            slots = [*_slots(case.body), ("hostile",)]
            options.append(st.tuples(st.just("body"), st.sampled_from(slots), st.sampled_from(HOSTILE_JSON)))
        if case.query:
            names = sorted(case.query)
            options.append(st.tuples(st.just("query"), st.sampled_from(names), st.sampled_from(HOSTILE_QUERY)))
        return st.one_of(options) if options else None

    def _eligible(self, case: schemathesis.Case[Any]) -> int | None:
        """One in how many such cases carries a shape; None: never (no fuzzing-phase case, or its credentials
        are broken on purpose, so it is refused before its body or query is read)."""
        meta = case.meta
        if meta is None or meta.phase.name != "fuzzing":
            return None
        headers = meta.components.get(ParameterLocation.HEADER)
        if headers is not None and headers.mode is schemathesis.GenerationMode.NEGATIVE:
            return None
        return self.SHARE[str(meta.generation.mode)]

    def install(self, schema: schemathesis.BaseSchema) -> Callable[[], None]:
        """Hook into `schema` (and, for the run, schemathesis's global `before_call`); returns the uninstaller."""

        def flatmap_case(context: schemathesis.HookContext, case: schemathesis.Case[Any]) -> Any:
            share, plans = self._eligible(case), self._plan_for(case)
            if share is None or plans is None:
                return st.just(case)

            def remember(plan: Plan) -> schemathesis.Case[Any]:
                self.plans[case.id] = plan
                return case

            return st.integers(0, share - 1).flatmap(lambda n: plans.map(remember) if n == share - 1 else st.just(case))

        @schemathesis.hook("before_call")
        def before_call(
            context: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: dict[str, Any]
        ) -> None:
            plan = self.plans.get(case.id)
            if plan is None:
                return
            kind, where, text = plan
            if kind == "body":
                raw = hostile_body(case.body, where, text) if isinstance(case.body, dict) else None
                if raw is None:
                    return
                kwargs["data"] = raw  # sent instead of the generated body (schemathesis then serializes nothing)
            else:
                case.query = {**case.query, where: text}
            PLANNED.add(case.id)
            self.sent += 1

        def after_call(
            context: schemathesis.HookContext, case: schemathesis.Case[Any], response: schemathesis.Response
        ) -> None:
            if case.id in PLANNED:
                self.statuses[response.status_code] += 1
                if response.status_code >= 500:
                    plan = self.plans[case.id]
                    self.server_errors.append(f"{case.method} {case.formatted_path} {plan!r}: {response.text[:300]}")

        schema.hook("flatmap_case")(flatmap_case)
        schema.hook("after_call")(after_call)

        def uninstall() -> None:
            GLOBAL_HOOK_DISPATCHER.unregister(before_call)
            PLANNED.clear()

        return uninstall


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
    hostile = HostileShapes()
    uninstall = hostile.install(schema)

    started = time.monotonic()
    found: list[str] = []
    statuses: Counter[int] = Counter()
    checks: Counter[str] = Counter()
    operations: set[str] = set()
    finished: events.EngineFinished | None = None
    stream = from_schema(schema).execute()
    try:
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
    finally:
        uninstall()
    elapsed = time.monotonic() - started
    reauth = finished.payload.reauth_count if finished is not None and finished.payload is not None else 0
    requests_sent = sum(statuses.values())
    print(f"\n{name}: {requests_sent} requests to {len(operations)} operations in {elapsed:.1f}s, {reauth} re-logins")
    print(f"statuses: {dict(sorted(statuses.items()))}")
    print(f"checks: {dict(sorted(checks.items()))}")
    print(f"hostile shapes: {hostile.sent} requests, statuses {dict(sorted(hostile.statuses.items()))}")

    assert finished is not None
    assert finished.stop_reason == StopReason.COMPLETED, f"stopped early ({finished.stop_reason}) after {elapsed:.0f}s"
    # First: a failure's reproduction shows the case as generated, not the hostile bytes it was sent with.
    assert not hostile.server_errors, "5xx on hostile shapes:\n" + "\n".join(hostile.server_errors)
    assert not found, "\n\n".join(dict.fromkeys(found))
    assert not any(status >= 500 for status in statuses), statuses
    assert hostile.sent >= MIN_HOSTILE, f"only {hostile.sent} requests carried a hostile shape"
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
