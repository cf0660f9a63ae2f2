"""Admin commands for credentials: `floatsrv user ...`, `floatsrv token ...`, `floatsrv apikey ...`,
`floatsrv audit`. They call the same domain functions as the admin API and are audited the same way."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from floatsrv.cli.tools import cli_actor, data_options, emit, resolve_config, run_with_store
from floatsrv.clock import SystemClock
from floatsrv.db.store import Store
from floatsrv.domain import accounts, credentials
from floatsrv.domain.credentials import AuditQuery
from floatsrv.models import Role
from floatsrv.times import iso_us, parse_instant

ROLES = click.Choice([role.value for role in Role])
CLOCK = SystemClock()


def _password_from_stdin(flag: bool) -> str | None:
    if not flag:
        return None
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise click.UsageError("--password-stdin: read an empty password")
    return password


@click.group("user")
def user_group() -> None:
    """Manage users (a new or reset user gets a temporary password to change at first login)."""


@user_group.command("add")
@click.argument("username")
@click.option("--role", type=ROLES, default="user", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the initial password from stdin instead of generating one.")
@data_options
def user_add(username: str, role: str, password_stdin: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Add a user (a temporary password is printed, or give one on stdin)."""
    config = resolve_config(config_path, data_dir)
    password = _password_from_stdin(password_stdin)
    temporary = run_with_store(
        config, lambda store: accounts.create_user(store, CLOCK, cli_actor(), username, Role(role), password)
    )
    click.echo(f"created {role} {username!r}; they must change the password at first login")
    if temporary:
        click.echo(f"temporary password (shown once): {temporary}")


@user_group.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the new temporary password from stdin.")
@data_options
def user_passwd(username: str, password_stdin: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Reset a user's password to a temporary one and revoke their tokens."""
    config = resolve_config(config_path, data_dir)
    password = _password_from_stdin(password_stdin)
    temporary = run_with_store(
        config, lambda store: accounts.reset_password(store, CLOCK, cli_actor(), username, password)
    )
    click.echo(f"password of {username!r} reset; their tokens are revoked; they must change it at next login")
    if temporary:
        click.echo(f"temporary password (shown once): {temporary}")


@user_group.command("set")
@click.argument("username")
@click.option("--role", type=ROLES)
@click.option("--disable/--enable", "disabled", default=None, help="Disabling also revokes their tokens.")
@data_options
def user_set(
    username: str, role: str | None, disabled: bool | None, config_path: Path | None, data_dir: Path | None
) -> None:
    """Change a user's role, or disable or enable them (disabling revokes their tokens)."""
    config = resolve_config(config_path, data_dir)
    row = run_with_store(
        config,
        lambda store: accounts.update_user(
            store, CLOCK, cli_actor(), username, role=Role(role) if role else None, disabled=disabled
        ),
    )
    click.echo(f"{row.username}: role {row.role}, {'disabled' if row.disabled else 'enabled'}")


@user_group.command("rm")
@click.argument("username")
@data_options
def user_rm(username: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Delete a user and revoke their tokens."""
    config = resolve_config(config_path, data_dir)
    run_with_store(config, lambda store: accounts.delete_user(store, CLOCK, cli_actor(), username))
    click.echo(f"deleted {username!r} and revoked their tokens")


@user_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@data_options
def user_list(as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Users: role, where declared (config or CLI), whether they must change their password, disabled."""
    config = resolve_config(config_path, data_dir)
    rows = run_with_store(config, accounts.list_users)
    emit(
        [
            {
                "username": r.username,
                "role": r.role,
                "source": r.source,
                "must_change": r.must_change_password,
                "disabled": r.disabled,
                "created_at": iso_us(r.created_at),
            }
            for r in rows
        ],
        ["username", "role", "source", "must_change", "disabled", "created_at"],
        as_json,
    )


@click.group("token")
def token_group() -> None:
    """List and revoke bearer tokens; rotate the signing key."""


@token_group.command("list")
@click.option("--user", "username")
@click.option("--all", "show_all", is_flag=True, help="Include revoked and expired tokens.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@data_options
def token_list(
    username: str | None, show_all: bool, limit: int, as_json: bool, config_path: Path | None, data_dir: Path | None
) -> None:
    """Bearer tokens issued by logins: whose, when, until when, from where (never the token itself)."""
    config = resolve_config(config_path, data_dir)
    rows = run_with_store(config, lambda store: credentials.list_tokens(store, CLOCK, username, not show_all, limit))
    emit(
        [
            {
                "id": r.jti,
                "username": r.username,
                "issued_at": iso_us(r.issued_at),
                "expires_at": iso_us(r.expires_at),
                "peer": r.peer,
                "revoked_at": iso_us(r.revoked_at),
            }
            for r in rows
        ],
        ["id", "username", "issued_at", "expires_at", "peer", "revoked_at"],
        as_json,
    )


@token_group.command("revoke")
@click.argument("token_id")
@data_options
def token_revoke(token_id: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Revoke one bearer token at once."""
    config = resolve_config(config_path, data_dir)
    run_with_store(config, lambda store: credentials.revoke_token(store, CLOCK, cli_actor(), token_id))
    click.echo(f"revoked token {token_id}")


@token_group.command("revoke-user")
@click.argument("username")
@data_options
def token_revoke_user(username: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Revoke every bearer token of one user at once."""
    config = resolve_config(config_path, data_dir)
    count = run_with_store(config, lambda store: credentials.revoke_user_tokens(store, CLOCK, cli_actor(), username))
    click.echo(f"revoked {count} tokens of {username!r}")


@token_group.command("rotate-key")
@data_options
def token_rotate_key(config_path: Path | None, data_dir: Path | None) -> None:
    """New signing key: every token issued so far stops working at once."""
    config = resolve_config(config_path, data_dir)
    generation = run_with_store(
        config, lambda store: credentials.rotate_signing_key(store, CLOCK, cli_actor(), config.token_key_path)
    )
    click.echo(f"signing key rotated (generation {generation}); all earlier tokens are invalid")


@click.group("apikey")
def apikey_group() -> None:
    """API keys for apps: long-lived, scoped to a role, revocable. Shown once."""


@apikey_group.command("create")
@click.argument("name")
@click.option("--role", type=ROLES, default="user", show_default=True)
@data_options
def apikey_create(name: str, role: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Create an API key for an app; the key is printed once."""
    config = resolve_config(config_path, data_dir)
    created = run_with_store(
        config, lambda store: credentials.create_api_key(store, CLOCK, cli_actor(), name, Role(role))
    )
    click.echo(f"created API key {created.row.id} ({name!r}, role {role}); send it as 'Authorization: Bearer <key>'")
    click.echo(f"key (shown once): {created.plaintext}")


@apikey_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@data_options
def apikey_list(as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """API keys: name, role, when and by whom made, revoked or not (never the key itself)."""
    config = resolve_config(config_path, data_dir)
    rows = run_with_store(config, credentials.list_api_keys)
    emit(
        [
            {
                "id": r.id,
                "name": r.name,
                "role": r.role,
                "created_at": iso_us(r.created_at),
                "created_by": r.created_by,
                "revoked_at": iso_us(r.revoked_at),
            }
            for r in rows
        ],
        ["id", "name", "role", "created_at", "created_by", "revoked_at"],
        as_json,
    )


@apikey_group.command("revoke")
@click.argument("key_id")
@data_options
def apikey_revoke(key_id: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Revoke an API key at once."""
    config = resolve_config(config_path, data_dir)
    run_with_store(config, lambda store: credentials.revoke_api_key(store, CLOCK, cli_actor(), key_id))
    click.echo(f"revoked API key {key_id}")


def _instant(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date-time") from None


@click.command("audit")
@click.option("--action", help="e.g. login_failed, token_revoked, user_created, seat_revoked")
@click.option("--actor")
@click.option("--target")
@click.option("--since", help="ISO 8601, inclusive")
@click.option("--until", help="ISO 8601, exclusive")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@data_options
def audit_command(
    action: str | None,
    actor: str | None,
    target: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Show the audit log, newest first."""
    config = resolve_config(config_path, data_dir)
    query = AuditQuery(
        action=action, actor=actor, target=target, since=_instant(since), until=_instant(until), limit=limit
    )

    async def fetch(store: Store) -> list[credentials.AuditRow]:
        return await credentials.audit_entries(store, query)

    rows = run_with_store(config, fetch)
    emit(
        [
            {
                "id": r.id,
                "at": iso_us(r.at),
                "action": r.action,
                "actor": r.actor,
                "target": r.target,
                "peer": r.peer,
                "detail": r.detail,
            }
            for r in rows
        ],
        ["id", "at", "action", "actor", "target", "peer", "detail"],
        as_json,
    )
