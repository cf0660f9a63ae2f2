"""The `policy:` and `reports:` sections of the config, as the admin writes them (shapes and syntax only).

Who may take which seats (groups; reserve, max, include and exclude; idle timeout and borrow overrides) is
decided by `floatsrv.domain.policy`, which compiles these models. What can be checked without the served
licenses is checked here (a `for` names a known group, an address is a network, one rule per license and
feature); what needs the licenses served (they exist, reservations fit in the seats) is `license_problems`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, IPvAnyNetwork, field_validator

from floatsrv.models import LicenseSpec, refuse_booleans

GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KINDS = ("user", "host", "login", "address")


def _entry(value: str) -> str:
    """`design` (a group), `user:NAME`, `host:NAME`, `login:NAME` (`*` and `?` glob) or `address:CIDR`."""
    kind, sep, rest = value.partition(":")
    if not sep:
        if not GROUP_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is neither a group name nor user:, host:, login: or address:")
        return value
    if kind not in KINDS:
        raise ValueError(f"{value!r}: the kind must be one of {', '.join(KINDS)} (or give a group name)")
    if not rest or len(rest) > 256 or any(ord(c) < 32 for c in rest):
        raise ValueError(f"{value!r}: give a name (1 to 256 printable characters) after {kind}:")
    if kind == "address":
        try:
            ipaddress.ip_network(rest, strict=False)
        except ValueError:
            raise ValueError(f"{value!r}: not an address or network (10.1.0.0/16, 2001:db8::/32)") from None
    return value


Entry = Annotated[str, AfterValidator(_entry)]
Glob = Annotated[str, Field(min_length=1, max_length=256)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    _no_booleans_for_numbers = field_validator("*", mode="before")(classmethod(refuse_booleans))


class Group(_Section):
    """A group matches a request when any of its lists does."""

    users: list[Glob] = Field(default_factory=list)
    hosts: list[Glob] = Field(default_factory=list)
    addresses: list[IPvAnyNetwork] = Field(default_factory=list)
    logins: list[Glob] = Field(default_factory=list)


class Quota(_Section):
    """`{count: 2, for: design}`: seats reserved for, or the most held by, whoever `for` matches."""

    count: Annotated[int, Field(gt=0, le=1_000_000)]
    for_: Entry = Field(alias="for")


class Rule(_Section):
    license: Annotated[int, Field(gt=0)]
    feature: Annotated[str, Field(min_length=1, max_length=256)] | None = None  # None: the license's seats
    reserve: list[Quota] = Field(default_factory=list)
    max: list[Quota] = Field(default_factory=list)
    include: list[Entry] | None = None  # None: everyone (who is not excluded)
    exclude: list[Entry] = Field(default_factory=list)
    timeout_minutes: Annotated[int, Field(gt=0, le=525_600)] | None = None
    max_borrow_hours: Annotated[int, Field(gt=0, le=87_600)] | None = None


class PolicyConfig(_Section):
    groups: dict[Annotated[str, Field(pattern=GROUP_NAME.pattern)], Group] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)

    def reference_problems(self) -> list[str]:
        """Every `for`, include and exclude entry naming an unknown group, and rules repeating a scope; one line
        each, naming the YAML path."""
        problems: list[str] = []
        seen: dict[tuple[int, str | None], int] = {}
        for index, rule in enumerate(self.rules):
            path = f"policy.rules[{index}]"
            scope = (rule.license, rule.feature)
            if scope in seen:
                what = f"license {rule.license}" + (f" feature {rule.feature!r}" if rule.feature else "")
                problems.append(f"{path}: a second rule for {what}; merge it into policy.rules[{seen[scope]}]")
            seen.setdefault(scope, index)
            named = [
                (f"{path}.{kind}[{i}].for", quota.for_)
                for kind in ("reserve", "max")
                for i, quota in enumerate(getattr(rule, kind))
            ]
            named += [(f"{path}.include[{i}]", entry) for i, entry in enumerate(rule.include or [])]
            named += [(f"{path}.exclude[{i}]", entry) for i, entry in enumerate(rule.exclude)]
            for where, entry in named:
                if ":" not in entry and entry not in self.groups:
                    known = ", ".join(sorted(self.groups)) or "none are defined"
                    problems.append(f"{where}: unknown group {entry!r} (groups: {known})")
        return problems


class ReportsConfig(_Section):
    # Seat history, the denial log and daily consumption totals are kept this long (independent of
    # storage.event_retention_days, which compacts raw usage events).
    retention_days: Annotated[int, Field(ge=1, le=36_500)] = 400


def license_problems(config: PolicyConfig, licenses: Sequence[LicenseSpec]) -> list[str]:
    """What the policy asks of licenses that cannot hold: unknown licenses or features, reservations beyond
    the seats, longer timeouts or borrows than the license allows. One line each, naming the YAML path."""
    served = {spec.id: spec for spec in licenses}
    found: list[str] = []
    for index, rule in enumerate(config.rules):
        path = f"policy.rules[{index}]"
        spec = served.get(rule.license)
        if spec is None:
            found.append(f"{path}.license: no license {rule.license} is served by this config")
            continue
        seats, timeout = spec.floating_users, spec.floating_timeout
        if rule.feature is not None:
            feature = spec.feature(rule.feature)
            if feature is None:
                found.append(f"{path}.feature: license {rule.license} has no feature {rule.feature!r}")
                continue
            if feature.floating_users is None:
                found.append(f"{path}.feature: {rule.feature!r} is not a floating feature (rules are about seats)")
                continue
            seats, timeout = feature.floating_users, spec.feature_timeout(feature)
        what = f"license {rule.license}" + (f" feature {rule.feature!r}" if rule.feature else "")
        reserved = sum(quota.count for quota in rule.reserve)
        if reserved > seats:
            found.append(f"{path}.reserve: reservations add up to {reserved}, more than the {seats} seats of {what}")
        if rule.timeout_minutes is not None and rule.timeout_minutes > timeout:
            found.append(
                f"{path}.timeout_minutes: {rule.timeout_minutes} is longer than {what} allows ({timeout} minutes)"
            )
        if rule.max_borrow_hours is not None:
            if not spec.can_borrow:
                found.append(f"{path}.max_borrow_hours: license {rule.license} does not allow borrowing")
            elif rule.max_borrow_hours > spec.max_borrow_time:
                found.append(
                    f"{path}.max_borrow_hours: {rule.max_borrow_hours} is longer than license {rule.license} "
                    f"allows ({spec.max_borrow_time} hours)"
                )
    return found
