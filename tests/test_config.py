"""Configuration: the example is complete and valid; every mistake names its key path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from floatsrv.config import Config, ConfigError, load_config, parse_config
from floatsrv.models import AddonGrant, CreditGrant, FeatureSpec, LicenseSpec
from tests.conftest import EXAMPLE
from tests.licensing import DEMO_SOURCE, demo_file_licenses


def test_example_config_is_valid_and_is_the_demo() -> None:
    config = load_config(EXAMPLE)
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert config.auth.enabled and {(u.username, u.role.value) for u in config.auth.users} == {
        ("demo", "user"),
        ("admin", "admin"),
    }
    assert config.licenses == [] and config.license_paths == (EXAMPLE.parent / "licenses",)
    [lic] = demo_file_licenses()  # the demo license comes from the demo-signed file
    assert (lic.id, lic.product, lic.floating_users, lic.floating_timeout, lic.can_borrow, lic.max_borrow_time) == (
        1001,
        "demo",
        3,
        30,
        True,
        72,
    )
    assert (lic.max_consumptions, lic.allow_overages, lic.max_overages, lic.consumption_period) == (
        1000,
        True,
        100,
        "monthly",
    )
    export, render = lic.features
    assert (export.code, export.floating_users) == ("export", 2)
    assert (render.code, render.feature_type, render.max_consumption, render.allow_overages) == (
        "render",
        "consumption",
        100,
        False,
    )
    assert config.storage.data_dir == EXAMPLE.parent / "floatsrv-data"  # relative to the file


def _keys(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def test_every_config_key_is_documented_in_the_example() -> None:
    """Config keys in config.example.yaml; license keys (inline or in a file) in demo/demo-licenses.yaml."""
    text = EXAMPLE.read_text() + DEMO_SOURCE.read_text()
    documented = set(re.findall(r"^\s*#?\s*-?\s*([a-z_]+):", text, flags=re.MULTILINE))
    sections: list[type[BaseModel]] = [Config, LicenseSpec, FeatureSpec, AddonGrant, CreditGrant]
    sections += [Config.model_fields[name].annotation for name in ("server", "storage", "log", "auth", "seats")]  # type: ignore[misc]
    from floatsrv.config import UserConfig

    sections.append(UserConfig)
    missing = set().union(*(_keys(model) for model in sections)) - documented
    # Consumption keys of features are listed in the comment beside render's allow_overages.
    missing -= {key for key in missing if key in text}
    assert not missing, f"config keys missing from config.example.yaml: {sorted(missing)}"


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "licenses: [{id: 1, product: x, floating_users: 3, features: [{code: a}, {code: b, floating_users: 0}]}]",
            "licenses[0].features[1].floating_users: must be a positive integer",
        ),
        ("server: {port: 99999}", "server.port: must be at most 65535"),
        ("server: {prot: 1}", "server.prot: is not a known key (check the spelling)"),
        ("auth: {users: [{username: bob}]}", "auth.users[0]: set exactly one of password or password_hash"),
        (
            "auth: {users: [{username: bob, password_hash: 'scrypt$nope'}]}",
            "auth.users[0]: password_hash is not a valid scrypt hash",
        ),
        ("licenses: [{id: 1, product: x}]", "licenses[0].floating_users: is required"),
        (
            "licenses: [{id: 1, product: x, floating_users: 1}, {id: 1, product: y, floating_users: 1}]",
            "licenses: license id 1 appears twice",
        ),
        (
            "licenses: [{id: 1, product: x, floating_users: 1, features: [{code: a}, {code: a}]}]",
            "licenses[0].features: feature code 'a' appears twice",
        ),
        (
            "licenses: [{id: 1, product: x, floating_users: 1, validity_period: someday}]",
            "licenses[0].validity_period: must be an ISO 8601 date-time",
        ),
        (
            "licenses: [{id: 1, product: x, floating_users: 1, license_type: consumption, reset_consumption: true}]",
            "licenses[0]: consumption_period is required when reset_consumption is true",
        ),
        (
            "licenses: [{id: 1, product: x, floating_users: 1, max_consumptions: 5}]",
            "licenses[0]: max_consumptions only applies to consumption licenses",
        ),
        (
            "licenses: [{id: 1, product: 'bad code!', floating_users: 1}]",
            "licenses[0].product: has characters that are not allowed",
        ),
        ("log: {level: loud}", "log.level: must be one of 'debug', 'info', 'warning' or 'error'"),
        ("storage: {synchronous: off}", "storage.synchronous: must be one of 'full' or 'normal'"),
        ("[1, 2]", "(top level): must be a mapping"),
        ("server: {port: [", "line 1"),
    ],
)
def test_errors_name_the_key_path(yaml_text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(yaml_text, Path("."))
    assert any(line.startswith(expected) for line in err.value.lines), err.value.lines


def test_several_problems_are_all_reported() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("server: {port: x, host: ''}\nlog: {format: xml}", Path("."))
    assert len(err.value.lines) == 3


def test_flags_override_the_file(tmp_path: Path) -> None:
    config = parse_config("server: {host: 0.0.0.0, port: 9000}", tmp_path)
    overridden = config.with_overrides(host="127.0.0.2", port=9001, data_dir=Path("rel"))
    assert (overridden.server.host, overridden.server.port) == ("127.0.0.2", 9001)
    assert overridden.storage.data_dir == Path("rel").absolute()
    assert config.with_overrides().server.port == 9000


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config: Any = parse_config("", tmp_path)
    assert config.licenses == [] and config.auth.enabled is True
