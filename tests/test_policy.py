"""The usage policy (`policy:`) through real HTTP: each keyword under concurrent registrations, the reason in
every refusal (and the LicenseSpring code SDKs parse), shorter timeouts and borrows, `login:` and `address:`
rules behind a trusted proxy, a SIGHUP that changes the policy while seats are held, and check-config."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from licensespring.api.error import ClientError
from licensespring.floating_server import FloatingAPIClient

from floatsrv.config import parse_config
from tests.conftest import ROOT, Api, example_dict, floatsrv_cli, start_api
from tests.licensing import sign_licenses
from tests.polling import wait_for
from tests.procs import ServerProcess

GROUPS = {"design": {"users": ["alice", "bob"], "hosts": ["cad-*"]}, "interns": {"users": ["intern*"]}}


def with_policy(*rules: dict[str, Any], groups: dict[str, Any] | None = None) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        data["policy"] = {"groups": GROUPS if groups is None else groups, "rules": list(rules)}

    return mutate


async def register_all(api: Api, users: list[str], **extra: Any) -> dict[str, tuple[int, Any]]:
    answers = await asyncio.gather(*(api.register(user, **extra) for user in users))
    return dict(zip(users, answers, strict=True))


def refused(answer: tuple[int, Any], reason: str) -> bool:
    status, body = answer
    return status == 400 and body["code"] == "floating_not_available" and body["message"].startswith(reason)


async def test_reserve_keeps_seats_for_its_group_under_concurrent_registrations(api_factory: Any) -> None:
    api: Api = await api_factory(with_policy({"license": 1001, "reserve": [{"count": 2, "for": "design"}]}))
    answers = await register_all(api, [f"other{i}" for i in range(8)])
    granted = [user for user, (status, _) in answers.items() if status == 200]
    assert len(granted) == 1, answers  # 3 seats, 2 kept for design
    assert all(refused(a, "seats_reserved_for_others") for u, a in answers.items() if u not in granted), answers
    # The group uses its reservation; a design host counts as design too.
    assert (await api.register("alice"))[0] == 200
    assert (await api.register("dave", os_hostname="CAD-07"))[0] == 200
    assert refused(await api.register("bob"), "all 3 floating seats are in use")  # full, reservation or not
    # A design member holding a seat no longer keeps it free for the group: one released, one free for all.
    assert (await api.post("/api/v4/unregister", {"product": "demo", "user": granted[0]}))[0] == 200
    assert (await api.register("zed"))[0] == 200


async def test_max_caps_a_group_across_its_members(api_factory: Any) -> None:
    api: Api = await api_factory(with_policy({"license": 1001, "max": [{"count": 1, "for": "interns"}]}))
    answers = await register_all(api, ["intern1", "intern2", "intern3"])
    assert sorted(status for status, _ in answers.values()) == [200, 400, 400], answers
    assert sum(refused(a, "user_max_reached") for a in answers.values()) == 2
    assert (await api.register("alice"))[0] == 200  # others are not capped
    held = [user for user, (status, _) in answers.items() if status == 200]
    assert (await api.register(held[0]))[0] == 200  # the intern's heartbeat is never refused


async def test_exclude_beats_include_and_include_limits_the_rest(api_factory: Any) -> None:
    rule = {"license": 1001, "include": ["design", "user:mallory"], "exclude": ["user:mallory", "host:kiosk-*"]}
    api: Api = await api_factory(with_policy(rule))
    assert refused(await api.register("mallory"), "excluded")
    assert refused(await api.register("alice", os_hostname="kiosk-3"), "excluded")
    assert refused(await api.register("carol"), "not_included")
    assert (await api.register("alice"))[0] == 200
    assert [s["user"] for s in await api.seats()] == ["alice"]


async def test_feature_rules_apply_to_feature_seats(api_factory: Any) -> None:
    api: Api = await api_factory(with_policy({"license": 1001, "feature": "export", "include": ["design"]}))
    for user in ("alice", "carol"):
        assert (await api.register(user))[0] == 200
    body = {"product": "demo", "feature": "export"}
    assert (await api.post("/api/v4/featureRegister", {**body, "user": "alice"}))[0] == 200
    assert refused(await api.post("/api/v4/featureRegister", {**body, "user": "carol"}), "not_included")


async def test_timeout_override_is_in_replies_and_expires_seats_at_the_new_time(api_factory: Any) -> None:
    api: Api = await api_factory(
        with_policy(
            {"license": 1001, "timeout_minutes": 10},
            {"license": 1001, "feature": "export", "timeout_minutes": 5},
        )
    )
    status, body = await api.register("alice")
    assert status == 200 and body["floating_timeout"] == 10
    license = json.loads(body["license_json"])
    assert license["floating_timeout"] == 10
    assert {f["code"]: f["floating_timeout"] for f in license["product_features"]}["export"] == 5
    status, _ = await api.post("/api/v4/featureRegister", {"product": "demo", "feature": "export", "user": "alice"})
    assert status == 200
    api.clock.advance(timedelta(minutes=5, seconds=1))
    assert {s["feature"] for s in await api.seats()} == {None}  # the feature seat went at 5 minutes
    api.clock.advance(timedelta(minutes=5))
    assert await api.seats() == []  # the license seat at 10, not the license's 30
    assert (await api.license())["floating_timeout"] == 10


async def test_max_borrow_hours_shortens_borrows(api_factory: Any) -> None:
    api: Api = await api_factory(with_policy({"license": 1001, "max_borrow_hours": 24}))
    assert (await api.register("alice"))[0] == 200
    status, body = await api.post(
        "/api/v4/borrow", {"product": "demo", "user": "alice", "borrowed_until": "2026-01-17T12:00:00Z"}
    )
    assert (status, body["code"]) == (400, "borrow_until_not_valid") and "24 hours" in body["message"]
    status, body = await api.post(
        "/api/v4/borrow", {"product": "demo", "user": "alice", "borrowed_until": "2026-01-16T11:00:00Z"}
    )
    assert status == 200, body


async def test_login_rules_are_enforced_on_the_authenticated_login(api_factory: Any) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["auth"]["users"].append({"username": "cad-app", "password": "cad-app-password", "role": "user"})
        with_policy({"license": 1001, "exclude": ["login:demo"]}, groups={})(data)

    api: Api = await api_factory(mutate)
    assert refused(await api.register("alice"), "excluded")  # demo's login, whatever user it claims
    cad = await api.login("cad-app", "cad-app-password")
    assert (await api.register("alice"))[0] == 200
    assert (await api.seats())[0]["principal"] == "cad-app" and cad


async def test_address_rules_see_the_client_behind_a_trusted_proxy(api_factory: Any) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["server"]["trusted_proxies"] = ["127.0.0.1/32"]
        data["policy"] = {
            "groups": {"lab": {"addresses": ["10.1.0.0/16"]}},
            "rules": [{"license": 1001, "include": ["lab"], "exclude": ["address:10.1.9.0/24"]}],
        }

    api: Api = await api_factory(mutate)
    body = {"product": "demo", "user": "alice"}
    assert refused(await api.post("/api/v4/register", body), "not_included")  # 127.0.0.1 itself
    behind = {"X-Forwarded-For": "10.1.9.7"}
    assert refused(await api.post("/api/v4/register", body, headers=behind), "excluded")
    assert (await api.post("/api/v4/register", body, headers={"X-Forwarded-For": "10.1.2.3"}))[0] == 200


async def test_refusals_are_in_the_denial_log_with_their_reason(api_factory: Any) -> None:
    api: Api = await api_factory(with_policy({"license": 1001, "max": [{"count": 1, "for": "interns"}]}))
    assert (await api.register("intern1", os_hostname="ws-1"))[0] == 200
    assert refused(await api.register("intern2", os_hostname="ws-2"), "user_max_reached")
    status, body = await api.get("/v1/reports/denials", params={"license_id": "1001"})
    assert status == 200, body
    [item] = body["data"]["items"]
    assert {k: item[k] for k in ("license_id", "feature", "kind", "user", "host", "login", "reason")} == {
        "license_id": 1001,
        "feature": None,
        "kind": "seat",
        "user": "intern2",
        "host": "ws-2",
        "login": "demo",
        "reason": "user_max_reached",
    }
    assert (item["in_use"], item["limit"], item["address"]) == ("1", "3", "127.0.0.1")


def _config_with(tmp_path: Path, policy: dict[str, Any]) -> Path:
    data = example_dict()
    data["storage"]["data_dir"] = str(tmp_path / "data")
    data["policy"] = policy
    sign_licenses(data, tmp_path)
    path = tmp_path / "floatsrv.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (
            {
                "rules": [{"license": 1001, "reserve": [{"count": 2, "for": "design"}, {"count": 2, "for": "user:x"}]}],
                "groups": {"design": {"users": ["a"]}},
            },
            "policy.rules[0].reserve: reservations add up to 4, more than the 3 seats of license 1001",
        ),
        (
            {"rules": [{"license": 1001, "max": [{"count": 1, "for": "desgin"}]}], "groups": {"design": {}}},
            "policy.rules[0].max[0].for: unknown group 'desgin' (groups: design)",
        ),
        ({"rules": [{"license": 4242, "exclude": ["user:x"]}]}, "policy.rules[0].license: no license 4242 is served"),
        (
            {"rules": [{"license": 1001, "feature": "nope"}]},
            "policy.rules[0].feature: license 1001 has no feature 'nope'",
        ),
        (
            {"rules": [{"license": 1001, "feature": "render"}]},
            "policy.rules[0].feature: 'render' is not a floating feature",
        ),
        (
            {"rules": [{"license": 1001, "feature": "export", "reserve": [{"count": 3, "for": "user:a"}]}]},
            "more than the 2 seats of license 1001 feature 'export'",
        ),
        (
            {"rules": [{"license": 1001, "timeout_minutes": 45}]},
            "policy.rules[0].timeout_minutes: 45 is longer than license 1001 allows (30 minutes)",
        ),
        (
            {"rules": [{"license": 1001, "max_borrow_hours": 100}]},
            "policy.rules[0].max_borrow_hours: 100 is longer than license 1001 allows (72 hours)",
        ),
        (
            {"rules": [{"license": 1001}, {"license": 1001}]},
            "policy.rules[1]: a second rule for license 1001; merge it into policy.rules[0]",
        ),
        (
            {"rules": [{"license": 1001, "exclude": ["address:10.1.0.0/33"]}]},
            "policy.rules[0].exclude[0]: Value error, 'address:10.1.0.0/33': not an address or network",
        ),
        (
            {"rules": [{"license": 1001, "exclude": ["machine:x"]}]},
            "the kind must be one of user, host, login, address",
        ),
    ],
)
def test_check_config_refuses_policies_that_cannot_hold(tmp_path: Path, policy: dict[str, Any], expected: str) -> None:
    result = floatsrv_cli("check-config", "--config", str(_config_with(tmp_path, policy)))
    assert result.returncode != 0, result.stdout
    assert expected.replace("Value error, ", "") in result.stdout + result.stderr, result.stdout + result.stderr


def test_check_config_accepts_the_readme_policy(tmp_path: Path) -> None:
    policy = {
        "groups": {"design": {"users": ["alice", "bob"], "hosts": ["cad-*"]}, "interns": {"users": ["intern*"]}},
        "rules": [
            {"license": 1001, "reserve": [{"count": 2, "for": "design"}], "max": [{"count": 1, "for": "interns"}]}
        ],
    }
    result = floatsrv_cli("check-config", "--config", str(_config_with(tmp_path, policy)))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_sdk_parses_every_refusal_and_sighup_changes_the_policy_under_held_seats(tmp_path: Path) -> None:
    config = example_dict()
    with_policy(
        {
            "license": 1001,
            "reserve": [{"count": 1, "for": "design"}],
            "max": [{"count": 1, "for": "interns"}],
            "include": ["design", "interns", "user:carol", "user:mallory"],
            "exclude": ["user:mallory"],
        }
    )(config)
    server = ServerProcess(tmp_path, config)
    server.start()
    try:
        assert server.proc is not None
        api = FloatingAPIClient(api_protocol="http", api_domain=server.domain)
        api.auth("demo", "demo-password")
        assert api.register_user(product="demo", user="intern1")["floating_slots_in_use"] == 1
        for user, reason in (("intern2", "user_max_reached"), ("mallory", "excluded"), ("dave", "not_included")):
            with pytest.raises(ClientError) as err:
                api.register_user(product="demo", user=user)
            assert (err.value.status, err.value.code) == (400, "floating_not_available")
            assert err.value.message.startswith(reason), err.value.message
        assert api.register_user(product="demo", user="carol")["floating_slots_in_use"] == 2
        with pytest.raises(ClientError) as err:  # the last seat is design's: reserve comes before max
            api.register_user(product="demo", user="intern9")
        assert err.value.message.startswith("seats_reserved_for_others")
        with pytest.raises(ClientError) as err:
            api.register_user(product="demo", user="carol2")
        assert err.value.code == "floating_not_available"

        # A new policy excludes everyone holding a seat: their heartbeats keep running, newcomers are refused.
        data = yaml.safe_load(server.config_path.read_text())
        data["policy"] = {"groups": {}, "rules": [{"license": 1001, "exclude": ["user:*"], "timeout_minutes": 20}]}
        server.config_path.write_text(yaml.safe_dump(data))
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any(e["event"] == "config_reloaded" for e in server.log_lines()))
        [reloaded] = [e for e in server.log_lines() if e["event"] == "config_reloaded"]
        assert "policy" in reloaded["applied"], reloaded
        for user in ("intern1", "carol"):
            assert api.register_user(product="demo", user=user)["floating_timeout"] == 20
        with pytest.raises(ClientError) as err:
            api.register_user(product="demo", user="alice")
        assert err.value.message.startswith("excluded")

        # A policy that does not fit the licenses is not applied; the running one stays.
        data["policy"] = {"groups": {}, "rules": [{"license": 1001, "reserve": [{"count": 9, "for": "user:a"}]}]}
        server.config_path.write_text(yaml.safe_dump(data))
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any(e["event"] == "policy_not_applied" for e in server.log_lines()))
        with pytest.raises(ClientError) as err:
            api.register_user(product="demo", user="alice")
        assert err.value.message.startswith("excluded")
    finally:
        assert server.stop() == 0


async def test_a_full_license_still_names_the_policy_reason(api_factory: Any) -> None:
    rule = {
        "license": 1001,
        "include": ["user:a", "user:b", "user:c", "interns"],
        "max": [{"count": 1, "for": "interns"}],
    }
    api: Api = await api_factory(with_policy(rule))
    for user in ("a", "b", "intern1"):
        assert (await api.register(user))[0] == 200
    assert refused(await api.register("zoe"), "not_included")  # not "all seats in use": she may never have one
    assert refused(await api.register("intern2"), "user_max_reached")
    assert refused(await api.register("c"), "all 3 floating seats are in use")


def test_group_names_are_checked_whole(tmp_path: Path) -> None:
    policy = {"groups": {"user:bob x": {"users": ["bob"]}}, "rules": []}
    result = floatsrv_cli("check-config", "--config", str(_config_with(tmp_path, policy)))
    assert result.returncode != 0 and "policy.groups" in result.stdout + result.stderr, result.stdout


def _issue_block() -> str:
    """The `policy:` block of issue 20 (the contract's shape), as docs/policy.md holds it verbatim."""
    found = re.search(r"\n## Policy\n\n```yaml\n(policy:\n.*?)```\n", (ROOT / "docs" / "policy.md").read_text(), re.S)
    assert found is not None, "docs/policy.md must open its Policy section with the issue's policy: block"
    return found.group(1)


async def test_the_issues_policy_block_verbatim_is_accepted_and_in_force(tmp_path: Path) -> None:
    block = _issue_block()
    # The contract's shape, so an edit of the documented block that drops a keyword fails here.
    policy = yaml.safe_load(block)["policy"]
    assert policy["groups"] == {
        "design": {"users": ["alice", "bob"], "hosts": ["cad-*"], "addresses": ["10.1.0.0/16"], "logins": ["cad-app"]},
        "interns": {"users": ["intern1", "intern2"]},
    }
    assert policy["rules"] == [
        {
            "license": 1001,
            "feature": "export",
            "reserve": [{"count": 1, "for": "design"}],
            "max": [{"count": 1, "for": "interns"}],
            "include": ["design", "user:carol"],
            "exclude": ["user:mallory", "host:kiosk-*"],
            "timeout_minutes": 10,
            "max_borrow_hours": 24,
        }
    ]
    data = example_dict()
    del data["policy"]  # the example's empty policy: the block below is the config's only one
    data["storage"]["data_dir"] = str(tmp_path / "data")
    sign_licenses(data, tmp_path)
    text = yaml.safe_dump(data) + block  # the block's text itself, comments and flow style as written
    path = tmp_path / "floatsrv.yaml"
    path.write_text(text)
    result = floatsrv_cli("check-config", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr

    api, client = await start_api(parse_config(text, tmp_path))
    try:
        await api.login()

        async def export(user: str, **extra: Any) -> tuple[int, Any]:
            body = {"product": "demo", "feature": "export", "user": user, **extra}
            return await api.post("/api/v4/featureRegister", body)

        for user in ("carol", "mallory", "dave"):
            assert (await api.register(user))[0] == 200  # the license's own seats have no rule
        assert refused(await export("mallory"), "excluded")
        assert refused(await export("dave"), "not_included")
        too_long = {"borrow_until": "2026-01-16T12:30:00Z"}  # 24.5 h ahead of the clock; the license allows 72
        status, body = await export("carol", **too_long)
        assert (status, body["code"]) == (400, "borrow_until_not_valid") and "24 hours" in body["message"], body
        status, body = await export("carol")
        assert (status, body["code"], body["floating_timeout"]) == (200, "export", 10), body
        status, body = await api.register("carol")  # a heartbeat: the license object carries the rule's timeout
        license = json.loads(body["license_json"])
        assert {f["code"]: f["floating_timeout"] for f in license["product_features"]}["export"] == 10
        assert (body["floating_timeout"], license["floating_timeout"]) == (30, 30)  # the license's own stays
        for user in ("mallory", "dave"):
            assert (await api.post("/api/v4/unregister", {"product": "demo", "user": user}))[0] == 200
        for user in ("intern1", "alice"):
            assert (await api.register(user))[0] == 200
        assert refused(await export("alice", os_hostname="kiosk-3"), "excluded")  # exclude beats include
        # One of the two export seats is free, and it is design's: an intern is refused for that first.
        assert refused(await export("intern1"), "seats_reserved_for_others")
        assert (await export("alice"))[0] == 200  # design takes its reserved seat
        held = [(s["user"], s["feature"]) for s in await api.seats()]
        assert sorted(user for user, feature in held if feature == "export") == ["alice", "carol"]
        # The rule's idle timeout: the export seats end after 10 minutes, the license seats (30) stay.
        api.clock.advance(timedelta(minutes=10, seconds=1))
        assert {s["feature"] for s in await api.seats()} == {None}
    finally:
        await client.close()
