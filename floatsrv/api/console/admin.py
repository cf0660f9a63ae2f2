"""The console's admin pages and every action it offers: licenses (files, upload, activation requests),
users, API keys and tokens, the audit log, sync (run now, retry, the air-gapped report and receipt), and ending
a seat. Each action calls the same domain function as its `/v1` twin, so it is checked and audited the same.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from floatsrv.api.account import actor
from floatsrv.api.admin import NewApiKey, NewUser, api_key_view, audit_view, seat_id, token_view, user_view
from floatsrv.api.console import params
from floatsrv.api.console.pages import license_page, pager
from floatsrv.api.console.params import PAGE_SIZE
from floatsrv.api.console.render import download, html
from floatsrv.api.console.session import Form, Session, action, page, redirect
from floatsrv.api.licensefiles import file_view, new_request
from floatsrv.api.sync import reopen_parked, run_upstreams, status_view
from floatsrv.api.validation import parse
from floatsrv.appkeys import CONFIG, DOMAIN, IDENTITY, LOGIN
from floatsrv.auth.hashing import HashGate
from floatsrv.domain import accounts, airgap, credentials, health, licensing, seats
from floatsrv.domain.credentials import AuditQuery
from floatsrv.errors import InvalidRequest, LicenseFileMalformed
from floatsrv.models import Role


def _field(form: Form, name: str, required: bool = True) -> str | None:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if required and not text:
        raise InvalidRequest(f"{name}: required", param=name)
    return text or None


def _upload(form: Form, name: str) -> bytes:
    part = form.get(name)
    if not isinstance(part, web.FileField):
        raise InvalidRequest(f"{name}: choose a file to upload", param=name)
    return part.file.read()


# --- licenses ---


@page()
async def licenses_page(request: web.Request, session: Session) -> web.StreamResponse:
    """Licenses: the license files in force (and ended ones), each license's terms, import and activation."""
    domain = request.app[DOMAIN]
    show_ended = request.query.get("files") == "all"
    files, files_pages = params.window(request, await licensing.files(domain.store, show_ended), "files_from")
    views, offset, total = await license_page(request, domain)
    return html(
        request,
        session,
        "licenses.html",
        files=[file_view(row, request) for row in files],
        files_pages=files_pages,
        show_ended=show_ended,
        licenses=views,
        pages=pager(request, offset, total),
        fingerprint=domain.licensing.fingerprint,
    )


@action()
async def upload_license(request: web.Request, session: Session, form: Form) -> web.StreamResponse:
    """Import a license file (applied whole or not at all; audited either way)."""
    try:
        text = _upload(form, "license_file").decode("utf-8")
    except UnicodeDecodeError:
        raise LicenseFileMalformed("a license file is ASCII text") from None
    result = await licensing.import_text(request.app[DOMAIN], actor(request), text)
    report = result.report
    outcome = {
        "file_id": result.file.file_id,
        "outcome": result.outcome,
        "licenses": result.file.license_ids,
        "added": report.added,
        "changed": report.changed,
        "removed": report.removed,
        "seats_ended": report.seats_ended,
    }
    return html(request, session, "license_imported.html", result=outcome)


@action()
async def activation_request(request: web.Request, session: Session, form: Form) -> web.StreamResponse:
    """Download a new offline activation request (for the vendor); recorded and audited."""
    made, document = await new_request(request)
    return download(document, f"{made.request_id}.req", "application/octet-stream")


# --- users, API keys, tokens ---


@page(Role.ADMIN)
async def users_page(request: web.Request, session: Session) -> web.StreamResponse:
    """Users, API keys and live tokens (a page of them; filter tokens by user)."""
    domain = request.app[DOMAIN]
    who = params.text(request, "token_user")
    tokens_from = params.number(request, "tokens_from", 0, most=1_000_000) or 0
    read = await credentials.list_tokens(domain.store, domain.clock, who, True, tokens_from + PAGE_SIZE + 1)
    users, users_pages = params.window(request, await accounts.list_users(domain.store), "users_from")
    keys, keys_pages = params.window(request, await credentials.list_api_keys(domain.store), "keys_from")
    tokens, tokens_pages = params.window(request, read, "tokens_from")
    return html(
        request,
        session,
        "users.html",
        users=[user_view(row) for row in users],
        users_pages=users_pages,
        keys=[api_key_view(row) for row in keys],
        keys_pages=keys_pages,
        tokens=[token_view(row) for row in tokens],
        tokens_pages=tokens_pages,
        token_user=who,
    )


async def _secret_page(request: web.Request, session: Session, title: str, secret: str) -> web.StreamResponse:
    return html(request, session, "secret.html", title=title, secret=secret)


@action()
async def create_user(request: web.Request, session: Session, form: Form) -> web.StreamResponse:
    """Add a user; without a password, a temporary one is made, shown once, and must be changed at first login."""
    domain = request.app[DOMAIN]
    wanted = {"username": _field(form, "username"), "role": _field(form, "role")}
    body = parse(NewUser, {**wanted, "password": _field(form, "password", False)})  # the rules of POST /v1/users
    temporary = await accounts.create_user(
        domain.store, domain.clock, actor(request), body.username, body.role, body.password, _gate(request)
    )
    if temporary is not None:
        return await _secret_page(request, session, f"Temporary password of {body.username}", temporary)
    return redirect("/ui/users?done=user_changed")


def _gate(request: web.Request) -> HashGate:
    return request.app[LOGIN].gate


@action()
async def user_action(request: web.Request, session: Session, form: Form) -> web.StreamResponse:
    """Reset a user's password, disable or enable them, revoke their tokens, or delete them."""
    domain = request.app[DOMAIN]
    username = str(_field(form, "username"))  # in the form, not the path: any name a user may have is safe here
    what = request.match_info["what"]
    who = actor(request)
    if what == "password":
        temporary = await accounts.reset_password(domain.store, domain.clock, who, username, None, _gate(request))
        return await _secret_page(request, session, f"Temporary password of {username}", str(temporary))
    if what in ("disable", "enable"):
        await accounts.update_user(domain.store, domain.clock, who, username, role=None, disabled=what == "disable")
        return redirect("/ui/users?done=user_changed")
    if what == "revoke-tokens":
        await credentials.revoke_user_tokens(domain.store, domain.clock, who, username)
        return redirect("/ui/users?done=tokens_revoked")
    if what == "delete":
        await accounts.delete_user(domain.store, domain.clock, who, username)
        return redirect("/ui/users?done=user_deleted")
    raise web.HTTPNotFound()


@action()
async def create_api_key(request: web.Request, session: Session, form: Form) -> web.StreamResponse:
    """Make an API key (shown once)."""
    domain = request.app[DOMAIN]
    body = parse(NewApiKey, {"name": _field(form, "name"), "role": _field(form, "role")})  # as POST /v1/api-keys
    created = await credentials.create_api_key(domain.store, domain.clock, actor(request), body.name, body.role)
    return await _secret_page(request, session, f"API key {body.name}", created.plaintext)


@action()
async def revoke_api_key(request: web.Request, session: Session, form: Form) -> web.StreamResponse:
    domain = request.app[DOMAIN]
    await credentials.revoke_api_key(domain.store, domain.clock, actor(request), request.match_info["key_id"])
    return redirect("/ui/users?done=key_revoked")


@action()
async def revoke_token(request: web.Request, session: Session, form: Form) -> web.StreamResponse:
    domain = request.app[DOMAIN]
    await credentials.revoke_token(domain.store, domain.clock, actor(request), request.match_info["token_id"])
    return redirect("/ui/users?done=token_revoked")


# --- audit ---


@page(Role.ADMIN)
async def audit_page(request: web.Request, session: Session) -> web.StreamResponse:
    """The audit log, newest first, filtered by action, actor or target."""
    rows = await credentials.audit_entries(
        request.app[DOMAIN].store,
        AuditQuery(
            action=params.text(request, "action"),
            actor=params.text(request, "actor"),
            target=params.text(request, "target"),
            since=None,
            until=None,
            before_id=params.number(request, "before"),
            limit=PAGE_SIZE + 1,
        ),
    )
    entries = [audit_view(row) for row in rows[:PAGE_SIZE]]
    more = params.link(request, before=entries[-1]["id"]) if len(rows) > PAGE_SIZE else None
    return html(request, session, "audit.html", entries=entries, more=more, query=request.query)


# --- sync ---


async def _sync_page(request: web.Request, session: Session, status: int = 200, **result: object) -> web.Response:
    return html(
        request,
        session,
        "sync.html",
        status=status,
        sync=await status_view(request),
        rollback=await health.rollback_report(request.app[DOMAIN]),  # what the overview's warning links here for
        receipt_key=_receipts_verifiable(request),
        result=result or None,
    )


def _receipts_verifiable(request: web.Request) -> bool:
    try:
        trust = request.app[DOMAIN].licensing.trust
        return bool(airgap.receipt_keys(trust, None, request.app[CONFIG].sync.vendor_public_key))
    except airgap.ReceiptRefused:
        return False


@page()
async def sync_page(request: web.Request, session: Session) -> web.StreamResponse:
    """Sync: what is owed to each upstream and to air-gapped reports, the last success and the last error."""
    return await _sync_page(request, session)


@action()
async def sync_run(request: web.Request, session: Session, form: Form) -> web.StreamResponse:
    """Sync every upstream now (audited), and show how it went."""
    runs, error = await run_upstreams(request)
    if error is not None:
        return await _sync_page(request, session, ok=False, message=f"Sync did not finish: {error}")
    done = ", ".join(f"{r['channel']}: {r['records']} records in {r['requests']} requests" for r in runs)
    return await _sync_page(request, session, ok=True, message=f"Sync finished ({done or 'nothing owed'}).")


@action()
async def sync_retry(request: web.Request, session: Session, form: Form) -> web.StreamResponse:
    await reopen_parked(request)
    return redirect("/ui/sync?done=sync_retried")


@action()
async def sync_export(request: web.Request, session: Session, form: Form) -> web.StreamResponse:
    """Download the signed air-gapped usage report (what `floatsrv usage export` writes)."""
    domain, config = request.app[DOMAIN], request.app[CONFIG]
    tolerance = timedelta(hours=config.licensing.clock_tolerance_hours)
    made = await airgap.export(
        domain.store, domain.clock, actor(request).name, config.sync.server_id, request.app[IDENTITY], tolerance
    )
    if made is None:
        return await _sync_page(request, session, ok=True, message="Nothing to export: the vendor has it all.")
    return download(made.document, f"usage-{made.report_id}.report", "application/octet-stream")


@action()
async def sync_receipt(request: web.Request, session: Session, form: Form) -> web.StreamResponse:
    """Import the vendor's signed receipt (what `floatsrv usage ack` does)."""
    domain, config = request.app[DOMAIN], request.app[CONFIG]
    document = _upload(form, "receipt")
    try:
        keys = airgap.receipt_keys(domain.licensing.trust, None, config.sync.vendor_public_key)
        payload = airgap.verify_receipt(document, keys)
    except airgap.ReceiptRefused as exc:
        return await _sync_page(request, session, 400, ok=False, message=str(exc))
    done = await airgap.acknowledge(domain.store, domain.clock, actor(request).name, payload, config.sync.server_id)
    message = f"Acknowledged {done.records} records of report {done.report_id}."
    if done.repaired:
        message += f" {done.repaired} counters were repaired from the vendor's totals (a restored database)."
    return await _sync_page(request, session, ok=True, message=message)


# --- seats ---


@action()
async def end_seat(request: web.Request, session: Session, form: Form) -> web.StreamResponse:
    """End a seat (audited like `floatsrv seats revoke`); its app's next heartbeat takes a new seat."""
    who = actor(request)
    await seats.revoke_seat(request.app[DOMAIN], seat_id(request), who.name, who.peer)
    return redirect("/ui/seats?done=seat_ended")
