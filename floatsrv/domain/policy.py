"""The usage policy (config `policy:`), compiled: who may take a new seat, and the seat terms a rule overrides.

A rule is about one license's seats (no `feature`) or one floating feature's seats. When someone asks for a
new seat (a heartbeat of a held seat is never judged again, so a changed policy leaves running apps alone),
the rule is applied in FlexLM's order of precedence:

1. `exclude`: anyone matched is refused (`excluded`), even when `include` names them too;
2. `reserve`: seats kept for a group, unused, are not free for anyone else (`seats_reserved_for_others`);
3. `max`: a group together holds at most this many (`user_max_reached`);
4. `include`: when given, only those matched may take a seat (`not_included`).

`user` and `host` are what the client says about itself, so rules on them are conveniences; `login` and
`address` (the caller's address, through `server.trusted_proxies`) are what a rule can enforce.

`timeout_minutes` and `max_borrow_hours` shorten the license's own terms: `served` gives the catalog whose
licenses carry them, so seats expire, and replies tell SDKs to heartbeat, at the rule's pace.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from floatsrv.domain.catalog import Catalog
from floatsrv.domain.license import License
from floatsrv.models import LicenseSpec
from floatsrv.policyconfig import Group, PolicyConfig, Rule
from floatsrv.policyconfig import Quota as QuotaConfig

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The reasons a policy (or a full license) gives for refusing a seat: stable, in the denial log and replies.
ALL_SEATS_IN_USE = "all_seats_in_use"
RESERVED = "seats_reserved_for_others"
MAX_REACHED = "user_max_reached"
EXCLUDED = "excluded"
NOT_INCLUDED = "not_included"


class Who(NamedTuple):
    """Who asks for (or holds) a seat, as a rule sees them."""

    user: str
    host: str | None
    login: str | None
    address: Address | None

    @classmethod
    def of(cls, user: str, host: str | None, login: str | None, address: str | None) -> Who:
        return cls(user, host, login, _address(address))


def _address(text: str | None) -> Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.partition("%")[0])  # an IPv6 zone id is not part of the address
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack listener's view of an IPv4 client
    return address


def _globs(patterns: Iterable[str], ignore_case: bool = False) -> re.Pattern[str] | None:
    parts = [fnmatch.translate(p) for p in patterns]
    return re.compile("|".join(parts), re.IGNORECASE if ignore_case else 0) if parts else None


class Matcher:
    """One `for` / include / exclude entry (a group or `kind:value`), compiled."""

    __slots__ = ("label", "_users", "_hosts", "_logins", "_networks")

    def __init__(self, label: str, group: Group) -> None:
        self.label = label
        self._users = _globs(group.users)
        self._hosts = _globs(group.hosts, ignore_case=True)  # host names are not case-sensitive
        self._logins = _globs(group.logins)
        self._networks: tuple[Network, ...] = tuple(group.addresses)

    @classmethod
    def of(cls, entry: str, groups: dict[str, Group]) -> Matcher:
        kind, sep, value = entry.partition(":")
        if not sep:
            return cls(entry, groups[entry])
        if kind == "address":
            return cls(entry, Group(addresses=[ipaddress.ip_network(value, strict=False)]))
        return cls(entry, Group.model_validate({f"{kind}s": [value]}))

    def matches(self, who: Who) -> bool:
        if self._users is not None and self._users.fullmatch(who.user):
            return True
        if self._hosts is not None and who.host is not None and self._hosts.fullmatch(who.host):
            return True
        if self._logins is not None and who.login is not None and self._logins.fullmatch(who.login):
            return True
        address = who.address
        return address is not None and any(address in network for network in self._networks)


class Quota(NamedTuple):
    seats: int
    who: Matcher


class Refusal(NamedTuple):
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class SeatRule:
    """One rule, compiled: what decides a new seat of its license (or feature)."""

    reserve: tuple[Quota, ...]
    max: tuple[Quota, ...]
    include: tuple[Matcher, ...] | None
    exclude: tuple[Matcher, ...]
    timeout_minutes: int | None
    max_borrow_hours: int | None

    @property
    def counts_holders(self) -> bool:
        """Whether deciding needs who holds the seats now (reserve and max do; include and exclude do not)."""
        return bool(self.reserve or self.max)

    @property
    def reserved(self) -> int:
        return sum(quota.seats for quota in self.reserve)

    def idle(self, holders: Sequence[Who]) -> int:
        """Reserved seats not in use: each reservation less the seats its group holds now ("reserved, idle")."""
        return sum(_unheld(quota, holders) for quota in self.reserve)

    def refusal(self, who: Who, holders: Sequence[Who], limit: int, in_use: int) -> Refusal | None:
        """Why `who` may not take a new seat (None: the policy allows it; the caller still checks the limit)."""
        for matcher in self.exclude:
            if matcher.matches(who):
                return Refusal(EXCLUDED, f"{EXCLUDED}: {matcher.label} may not use these seats")
        kept = sum(_unheld(quota, holders) for quota in self.reserve if not quota.who.matches(who))
        if 0 < limit - in_use <= kept:  # (a full license is refused as such by the caller, after max and include)
            return Refusal(
                RESERVED,
                f"{RESERVED}: {limit - in_use} of {limit} seats are free, and {kept} are reserved for others",
            )
        for quota in self.max:
            if quota.who.matches(who):
                held = sum(1 for holder in holders if quota.who.matches(holder))
                if held >= quota.seats:
                    return Refusal(
                        MAX_REACHED, f"{MAX_REACHED}: {quota.who.label} may hold at most {quota.seats} of these seats"
                    )
        if self.include is not None and not any(matcher.matches(who) for matcher in self.include):
            return Refusal(NOT_INCLUDED, f"{NOT_INCLUDED}: these seats are only for {_labels(self.include)}")
        return None


def _unheld(quota: Quota, holders: Sequence[Who]) -> int:
    return max(0, quota.seats - sum(1 for holder in holders if quota.who.matches(holder)))


def _labels(matchers: Sequence[Matcher]) -> str:
    return ", ".join(matcher.label for matcher in matchers) or "nobody"


def _compile(rule: Rule, groups: dict[str, Group]) -> SeatRule:
    def quotas(items: Sequence[QuotaConfig]) -> tuple[Quota, ...]:
        return tuple(Quota(q.count, Matcher.of(q.for_, groups)) for q in items)

    return SeatRule(
        reserve=quotas(rule.reserve),
        max=quotas(rule.max),
        include=None if rule.include is None else tuple(Matcher.of(e, groups) for e in rule.include),
        exclude=tuple(Matcher.of(e, groups) for e in rule.exclude),
        timeout_minutes=rule.timeout_minutes,
        max_borrow_hours=rule.max_borrow_hours,
    )


class Policy:
    """The compiled policy. Immutable; a reload compiles a new one and swaps it in (`Domain.apply_policy`)."""

    __slots__ = ("_rules", "config")

    def __init__(self, config: PolicyConfig | None = None) -> None:
        config = self.config = config or PolicyConfig()
        self._rules = {(r.license, r.feature or ""): _compile(r, config.groups) for r in config.rules}

    def __bool__(self) -> bool:
        return bool(self._rules)

    def rule(self, license_id: int, feature: str) -> SeatRule | None:
        """The rule for a license's seats (feature '') or one floating feature's, if any."""
        return self._rules.get((license_id, feature)) if self._rules else None

    def reserved(self, license_id: int, feature: str) -> int:
        rule = self.rule(license_id, feature)
        return rule.reserved if rule is not None else 0

    def served(self, catalog: Catalog) -> Catalog:
        """`catalog` with the rules' shorter idle timeouts and borrows written into the licenses' terms."""
        changed: dict[int, License] = {}
        for (license_id, feature), rule in self._rules.items():
            if rule.timeout_minutes is None and rule.max_borrow_hours is None:
                continue
            license = changed.get(license_id) or catalog.get(license_id)
            if license is None:
                continue  # a rule for a license not served (now): check-config names it
            spec = _shortened(license.spec, feature, rule)
            changed[license_id] = License(spec=spec, added_seq=license.added_seq, source=license.source)
        return catalog.replaced(changed.values()) if changed else catalog


def _shortened(spec: LicenseSpec, feature: str, rule: SeatRule) -> LicenseSpec:
    if not feature:
        update: dict[str, object] = {}
        if rule.timeout_minutes is not None:
            update["floating_timeout"] = min(rule.timeout_minutes, spec.floating_timeout)
        if rule.max_borrow_hours is not None:
            update["max_borrow_time"] = min(rule.max_borrow_hours, spec.max_borrow_time)
        return spec.model_copy(update=update)
    found = spec.feature(feature)
    if found is None or rule.timeout_minutes is None:
        return spec  # a feature's borrow follows the license's; its rule's max_borrow_hours is applied per borrow
    timeout = min(rule.timeout_minutes, spec.feature_timeout(found))
    features = [f.model_copy(update={"floating_timeout": timeout}) if f is found else f for f in spec.features]
    return spec.model_copy(update={"features": features})
