"""The domain's collaborators in one object: the store, the clock, the current license catalog and what
decides it (the build's trust anchor, this server's key, the config's inline licenses and license files), and
the usage policy (who may take which seats)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from floatsrv.clock import Clock
from floatsrv.db.store import Store
from floatsrv.domain.catalog import Catalog
from floatsrv.domain.license import License
from floatsrv.domain.licensefiles import Licensing
from floatsrv.domain.policy import Policy
from floatsrv.entitlements.trust import load_trust_anchor
from floatsrv.log import get_logger
from floatsrv.policyconfig import license_problems

log = get_logger("floatsrv.policy")


@dataclass(frozen=True, slots=True)
class UsageWindows:
    """How far a usage event's `occurred_at` may be ahead of the server clock, and how far behind."""

    max_future_skew: timedelta = timedelta(minutes=5)
    max_lateness: timedelta = timedelta(days=34)

    @classmethod
    def of(cls, future_skew_seconds: float, lateness_days: float) -> UsageWindows:
        """The windows as the config states them (`usage.max_future_skew_seconds`, `usage.max_lateness_days`)."""
        return cls(timedelta(seconds=future_skew_seconds), timedelta(days=lateness_days))


@dataclass(slots=True)
class Domain:
    store: Store
    clock: Clock
    catalog: Catalog  # what is served: swapped as a whole (`serve`, `apply_policy`); never mutated
    usage: UsageWindows = UsageWindows()
    # Default (admin commands): this build's keys, no server key, the inline licenses the database has.
    licensing: Licensing = field(default_factory=lambda: Licensing(load_trust_anchor(), None))

    policy: Policy = field(default_factory=Policy)
    licensed: Catalog | None = None  # the catalog as licensing decided it, before the policy's terms

    def feature_ids(self, license: License) -> Mapping[str, int]:
        return self.catalog.feature_ids_of(license)

    def serve(self, catalog: Catalog) -> None:
        """Serve the licenses licensing decided on (start, reload, license file changes), on the policy's terms."""
        self.licensed = catalog
        self.catalog = self.policy.served(catalog)
        if self.policy and (problems := license_problems(self.policy.config, [x.spec for x in catalog.licenses()])):
            # The licenses changed under the policy (a new license file, a removal): it still applies as far as
            # it can; the admin must adapt it (check-config names the same problems).
            log.warning("policy_does_not_fit_licenses", problems=problems)

    def apply_policy(self, policy: Policy) -> None:
        self.policy = policy
        self.serve(self.licensed if self.licensed is not None else self.catalog)
