"""Configuration: parsed from YAML and validated once at start-up into frozen models.

Order of precedence: built-in defaults < YAML file < command-line flags. Every problem is reported as
one line naming the YAML key path (`licenses[0].features[1].floating_users: must be a positive integer`).
Relative paths in the file (the data directory) are resolved against the file's own directory, so a
config behaves the same wherever the server is started from.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from floatsrv import yamltext
from floatsrv.auth.passwords import MIN_PASSWORD_LENGTH, is_valid_hash
from floatsrv.models import LicenseSpec, Role, refuse_booleans
from floatsrv.policyconfig import PolicyConfig, ReportsConfig

# Passwords published in our docs and example config. While one of them is in use the server warns loudly.
DEMO_PASSWORDS = frozenset({"demo-password", "admin-password"})

# The exit code of every command that finds the configuration unusable (a service manager must not restart).
EXIT_BAD_CONFIG = 2


class ConfigError(Exception):
    """One or more problems in a config file; `lines` holds one human line per problem."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # YAML's true/false are not numbers: `floating_users: true` must not read as 1 seat.
    _no_booleans_for_numbers = field_validator("*", mode="before")(classmethod(refuse_booleans))


class ServerConfig(_Section):
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    max_body_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    # An idle keep-alive connection (or one that never completes its request headers) is closed after this.
    idle_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    # A request body must arrive within this many seconds (slow or stalled clients get 408).
    request_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    # A backward step of the system clock larger than this is logged and shown by /readyz.
    clock_jump_tolerance_seconds: Annotated[int, Field(ge=0, le=86_400)] = 5
    # Reverse proxies (CIDRs) whose X-Forwarded-For is believed: the client's address is then the right-most
    # address in it that is not one of them. Empty: the header is ignored (the TCP peer is the client).
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    # Optional TLS: PEM certificate (chain) and private key. Both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @model_validator(mode="after")
    def check_tls_pair(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both tls_cert and tls_key, or neither")
        return self


class PostgresConfig(_Section):
    # postgresql://user@host/db (docs/high-availability.md); a password better in password_file or PGPASSWORD.
    dsn: SecretStr
    password_file: Path | None = None
    # Reader connections of each node (the writer has one more of its own).
    pool_size: Annotated[int, Field(ge=1, le=64)] = 4


class StorageConfig(_Section):
    # sqlite: one machine, a file in data_dir. postgresql: several nodes sharing one database (storage.postgresql).
    backend: Literal["sqlite", "postgresql"] = "sqlite"
    postgresql: PostgresConfig | None = None
    data_dir: Path = Path("floatsrv-data")
    # FULL survives power loss; NORMAL (WAL) may lose the last commits on power loss, never on a crash.
    synchronous: Literal["full", "normal"] = "full"
    busy_timeout_ms: Annotated[int, Field(ge=0, le=600_000)] = 5000
    # Most requests one commit carries (group commit). 1: one commit per request, for benchmarks only.
    max_batch_units: Annotated[int, Field(ge=1, le=10_000)] = 256
    # Raw usage events older than this are compacted into their counters (0: keep them all). Counters, their
    # sync and event-id deduplication are unaffected.
    event_retention_days: Annotated[int, Field(ge=0, le=36_500)] = 90

    @model_validator(mode="after")
    def check_backend(self) -> Self:
        dsn = self.postgresql.dsn.get_secret_value() if self.postgresql else ""
        if self.backend == "postgresql" and not dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError("backend postgresql needs storage.postgresql.dsn: postgresql://user@host:port/database")
        return self


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: coloured console lines on a terminal, JSON lines otherwise.
    format: Literal["auto", "json", "console"] = "auto"
    # Which requests get a log line: all | changes (not heartbeats that only renew a seat, nor reads) |
    # errors (only answers of 400 and above).
    requests: Literal["all", "changes", "errors"] = "all"


class UserConfig(_Section):
    username: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^:\s\x00-\x1f\x7f]+$")]
    password: SecretStr | None = None
    password_hash: Annotated[str, Field(pattern=r"^scrypt\$")] | None = None
    role: Role = Role.USER

    @field_validator("password")
    @classmethod
    def check_length(cls, password: SecretStr | None) -> SecretStr | None:
        # The same rule as `floatsrv user add`: a declared user is never asked to change it.
        if password is not None and len(password.get_secret_value()) < MIN_PASSWORD_LENGTH:
            raise ValueError(f"must be at least {MIN_PASSWORD_LENGTH} characters")
        return password

    @model_validator(mode="after")
    def check_one_secret(self) -> Self:
        if (self.password is None) == (self.password_hash is None):
            raise ValueError("set exactly one of password or password_hash")
        if self.password_hash is not None and not is_valid_hash(self.password_hash):
            raise ValueError("password_hash is not a valid scrypt hash (make one with `floatsrv hash-password`)")
        return self

    @property
    def uses_demo_password(self) -> bool:
        return self.password is not None and self.password.get_secret_value() in DEMO_PASSWORDS


class UsageConfig(_Section):
    # Native usage events may say when the usage happened (occurred_at); how far ahead of the server clock
    # and how far back that may be. Usage is counted in the period it happened in.
    max_future_skew_seconds: Annotated[int, Field(ge=0, le=86_400)] = 300
    max_lateness_days: Annotated[int, Field(ge=0, le=3650)] = 34


class UpstreamConfig(_Section):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,49}$")]
    # floatsrv: our own format (cumulative totals with revisions); rebilly-usages: one POST /usages per delta.
    format: Literal["floatsrv", "rebilly-usages"] = "floatsrv"
    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")]
    token: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    # rebilly-usages: which subscription a license's (or a license feature's) usage belongs to:
    # "1001": "sub_...", or "1001/render": "sub_..." for one feature. Usage with no mapping is not sent there.
    subscriptions: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500

    @model_validator(mode="after")
    def check_name(self) -> Self:
        if self.name == "airgap":
            raise ValueError("the name airgap is reserved for file exports")
        return self


class SyncConfig(_Section):
    # How often pending usage is sent upstream (LicenseSpring syncs hourly). `floatsrv sync now` sends at once.
    interval_seconds: Annotated[float, Field(gt=0, le=86_400)] = 3600.0
    backoff_max_seconds: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    # On shutdown, keep trying to send what is pending for at most this long.
    shutdown_timeout_seconds: Annotated[float, Field(ge=0, le=300)] = 10.0
    # Names this server to upstreams; default: generated once and kept in the database.
    server_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")] | None = None
    upstreams: Annotated[list[UpstreamConfig], AfterValidator(lambda u: _check_unique_names(u))] = Field(
        default_factory=list
    )
    # Ed25519 public key (base64 of its 32 bytes) that signs receipts for air-gapped usage reports.
    vendor_public_key: Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{43}=$")] | None = None


def _check_unique_names(upstreams: list[UpstreamConfig]) -> list[UpstreamConfig]:
    names = [u.name for u in upstreams]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"upstream name {name!r} appears twice")
    return upstreams


def _unique(attribute: str, label: str) -> AfterValidator:
    """A list validator refusing two items with the same `attribute`."""

    def check(items: list[Any]) -> list[Any]:
        seen: set[object] = set()
        for item in items:
            value = getattr(item, attribute)
            if value in seen:
                raise ValueError(f"{label} {value!r} appears twice")
            seen.add(value)
        return items

    return AfterValidator(check)


class LoginThrottleConfig(_Section):
    max_failures_per_address: Annotated[int, Field(gt=0)] = 5
    address_window_seconds: Annotated[int, Field(gt=0, le=86_400)] = 60
    max_failures_per_user: Annotated[int, Field(gt=0)] = 10
    user_window_seconds: Annotated[int, Field(gt=0, le=86_400)] = 300
    # Password checks (scrypt, tens of ms of CPU each) run on their own threads: at most this many at once ...
    max_concurrent_checks: Annotated[int, Field(ge=1, le=64)] = 1
    # ... and at most this many a second; logins beyond that get 503 with Retry-After, without a check.
    max_checks_per_second: Annotated[float, Field(gt=0, le=10_000)] = 10.0
    # A login from an address without recent failures may wait this long for a check instead.
    queue_seconds: Annotated[float, Field(ge=0, le=60)] = 5.0


class AuthConfig(_Section):
    enabled: bool = True
    # LicenseSpring's v1 SDK never refreshes its token, so the default (a year) keeps long-running apps
    # working; revocation is immediate, so the lifetime is only a backstop.
    token_lifetime_hours: Annotated[int, Field(gt=0, le=24 * 3650)] = 24 * 365
    login_throttle: LoginThrottleConfig = Field(default_factory=LoginThrottleConfig)
    users: Annotated[list[UserConfig], _unique("username", "username")] = Field(default_factory=list)


class ConsoleConfig(_Section):
    # The admin console in the browser at /ui/ (docs/console.md).
    enabled: bool = True
    # A console login lasts this long (never longer than auth.token_lifetime_hours); logging out ends it at once.
    session_hours: Annotated[int, Field(gt=0, le=24 * 30)] = 12


class SeatsConfig(_Section):
    # How often expired seats are marked ended. Expired seats never count, even before this runs.
    sweep_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0


class MetricsConfig(_Section):
    # A bearer token that may read /metrics only (for Prometheus), besides any viewer login. None: logins only.
    token: Annotated[SecretStr, Field(min_length=16)] | None = None


class LicensingConfig(_Section):
    # A `floatsrv`-format upstream (sync.upstreams[].name) to activate at and refresh license files from;
    # None: license files come only from files and `floatsrv license import` (offline).
    upstream: str | None = None
    refresh_interval_seconds: Annotated[float, Field(ge=10, le=30 * 86_400)] = 86_400.0
    # A system clock this far behind the latest time the server has seen is clock tampering.
    clock_tolerance_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 24.0


class ApiV5Config(_Section):
    # LicenseSpring Floating Server v2 (`/api/v5`, signed responses). Off by default: LicenseSpring's Python
    # SDK switches to v5 by itself once /api/v5/ping answers, and then needs the certificate chain. Read at
    # start-up only (a restart applies a change).
    enabled: bool = False
    signing_key: Path | None = None  # the leaf certificate's RSA key (floatsrv v5 make-chain writes one)
    certificate_chain: Path | None = None  # chain.pem: leaf, intermediate, root; what apps are given

    @model_validator(mode="after")
    def paths_when_enabled(self) -> ApiV5Config:
        if self.enabled and (self.signing_key is None or self.certificate_chain is None):
            raise ValueError(
                "signing_key and certificate_chain are required when enabled is true "
                "(make both with: floatsrv v5 make-chain --out DIR)"
            )
        return self


class Config(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    seats: SeatsConfig = Field(default_factory=SeatsConfig)
    usage: UsageConfig = Field(default_factory=UsageConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    licensing: LicensingConfig = Field(default_factory=LicensingConfig)
    api_v5: ApiV5Config = Field(default_factory=ApiV5Config)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)  # who may take which seats (re-read on SIGHUP)
    reports: ReportsConfig = Field(default_factory=ReportsConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    # Vendor-signed license files: files and/or directories (their *.lic files); default: licenses/ beside
    # the config file. `floatsrv license import` adds files without listing them here.
    license_files: list[Path] | None = None
    # Inline (unsigned) licenses: only where the build allows them (the repository build does).
    licenses: Annotated[list[LicenseSpec], _unique("id", "license id")] = Field(default_factory=list)

    @model_validator(mode="after")
    def licensing_upstream_exists(self) -> Config:
        name = self.licensing.upstream
        if name is not None:
            formats = {upstream.name: upstream.format for upstream in self.sync.upstreams}
            if formats.get(name) != "floatsrv":
                raise ValueError(f"licensing.upstream: {name!r} must name one of sync.upstreams with format floatsrv")
        return self

    def licensing_upstream(self) -> UpstreamConfig | None:
        return next((u for u in self.sync.upstreams if u.name == self.licensing.upstream), None)

    @property
    def license_paths(self) -> tuple[Path, ...]:
        return tuple(self.license_files or ())

    @property
    def db_path(self) -> Path:
        return self.storage.data_dir / "floatsrv.db"

    @property
    def signing_key_path(self) -> Path:
        """Ed25519 key that signs air-gapped usage reports: created on first use, mode 0600."""
        return self.storage.data_dir / "server-ed25519.pem"

    @property
    def auth_stamp_path(self) -> Path:
        """Replaced by the admin CLI after credential changes, so running servers notice at once."""
        return self.storage.data_dir / "auth.stamp"

    @property
    def token_key_path(self) -> Path:
        """The bearer-token signing key: created on first start, mode 0600, never in the YAML."""
        return self.storage.data_dir / "token-signing.key"

    def with_overrides(
        self, *, host: str | None = None, port: int | None = None, data_dir: Path | None = None
    ) -> Config:
        """Apply command-line flags, which win over the file."""
        server = self.server.model_copy(update={k: v for k, v in (("host", host), ("port", port)) if v is not None})
        storage = self.storage
        if data_dir is not None:
            storage = storage.model_copy(update={"data_dir": data_dir.absolute()})
        return self.model_copy(update={"server": server, "storage": storage})


def _yaml_problem(text: str) -> str:
    """Where and what is wrong, from the pure-Python parser: its marks point at the offending token
    (libyaml's often point at the end of the input)."""
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return f"{where}{getattr(exc, 'problem', None) or 'invalid YAML'}"
    return "invalid YAML"


def parse_config(text: str, base_dir: Path) -> Config:
    """Parse YAML text into a validated Config. Raises ConfigError naming every bad key path."""
    try:
        raw = yamltext.load(text)
    except yamltext.DuplicateKey as exc:
        raise ConfigError([str(exc)]) from None
    except yaml.YAMLError:
        raise ConfigError([_yaml_problem(text)]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): must be a mapping of sections (server, storage, auth, licenses, ...)"])
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([describe(error) for error in exc.errors()]) from None
    if problems := config.policy.reference_problems():
        raise ConfigError(problems)
    data_dir = config.storage.data_dir
    if not data_dir.is_absolute():
        config = config.with_overrides(data_dir=base_dir / data_dir)
    if config.license_files is None:
        config = config.model_copy(update={"license_files": [base_dir / "licenses"]})
    else:
        paths = [path if path.is_absolute() else base_dir / path for path in config.license_files]
        missing = [f"license_files[{i}]: {path} does not exist" for i, path in enumerate(paths) if not path.exists()]
        if missing:
            raise ConfigError(missing)
        config = config.model_copy(update={"license_files": paths})
    if config.server.tls_cert is not None and config.server.tls_key is not None:
        cert, key = base_dir / config.server.tls_cert, base_dir / config.server.tls_key
        pair = (("tls_cert", cert), ("tls_key", key))
        missing = [f"server.{name}: {path} does not exist" for name, path in pair if not path.is_file()]
        if missing:
            raise ConfigError(missing)
        config = config.model_copy(
            update={"server": config.server.model_copy(update={"tls_cert": cert, "tls_key": key})}
        )
    v5 = config.api_v5
    if v5.signing_key is not None or v5.certificate_chain is not None:
        resolved = {
            name: path if path is None or path.is_absolute() else base_dir / path
            for name, path in (("signing_key", v5.signing_key), ("certificate_chain", v5.certificate_chain))
        }
        config = config.model_copy(update={"api_v5": v5.model_copy(update=resolved)})
    return config


def bootstrap_admin(environ: Mapping[str, str]) -> UserConfig | None:
    """An admin from FLOATSRV_ADMIN_USERNAME (default `admin`) with FLOATSRV_ADMIN_PASSWORD or
    FLOATSRV_ADMIN_PASSWORD_HASH, for containers and first installs. Raises ConfigError."""
    password = environ.get("FLOATSRV_ADMIN_PASSWORD")
    password_hash = environ.get("FLOATSRV_ADMIN_PASSWORD_HASH")
    if password is None and password_hash is None:
        return None
    data = {
        "username": environ.get("FLOATSRV_ADMIN_USERNAME", "admin"),
        "role": "admin",
        "password": password,
        "password_hash": password_hash,
    }
    try:
        return UserConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([f"FLOATSRV_ADMIN_*: {describe(e)}" for e in exc.errors()]) from None


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"cannot read {path}: not UTF-8 text"]) from None
    return parse_config(text, path.absolute().parent)


def format_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


_MESSAGES: dict[str, str] = {
    "missing": "is required",
    "extra_forbidden": "is not a known key (check the spelling)",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "datetime_type": "must be an ISO 8601 date-time",
    "datetime_parsing": "must be an ISO 8601 date-time",
    "path_type": "must be a path",
}


def describe(error: Any) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    # pydantic puts union members and validator names into loc; keep only real keys and indexes.
    loc = tuple(p for p in error["loc"] if isinstance(p, int) or not (p.startswith("function-") or "[" in p))
    loc = tuple(p for p in loc if p not in ("int", "str", "bool", "datetime", "constrained-str", "constrained-int"))
    if kind == "greater_than":
        message = "must be a positive integer" if ctx.get("gt") == 0 else f"must be greater than {ctx.get('gt')}"
    elif kind == "greater_than_equal":
        message = "must be zero or more" if ctx.get("ge") == 0 else f"must be at least {ctx.get('ge')}"
    elif kind in ("less_than", "less_than_equal"):
        message = f"must be at most {ctx.get('le', ctx.get('lt'))}"
    elif kind == "literal_error" or kind == "enum":
        message = f"must be one of {ctx.get('expected')}"
    elif kind == "string_pattern_mismatch":
        message = "has characters that are not allowed"
    elif kind == "string_too_short" or (kind == "too_short" and ctx.get("field_type") == "Value"):
        least = ctx.get("min_length")
        message = "must not be empty" if least == 1 else f"must be at least {least} characters"
    elif kind == "string_too_long":
        message = f"must be at most {ctx.get('max_length')} characters"
    elif kind == "too_short":
        message = f"must have at least {ctx.get('min_length')} items"
    elif kind == "too_long":
        message = f"must have at most {ctx.get('max_length')} items"
    elif kind == "value_error":
        message = str(ctx.get("error") or error["msg"])
    else:
        message = _MESSAGES.get(kind, str(error["msg"]).lower())
    return f"{format_path(loc)}: {message}"


class LiveConfig:
    """The config as last (re)loaded by SIGHUP. Code reads the settings that may change while serving
    (`floatsrv.reload.LIVE_KEYS`) from here; everything else from the start-up config."""

    def __init__(self, config: Config) -> None:
        self.config = config
