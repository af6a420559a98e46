"""Command-line interface (``flask --app wsgi ...``): one transaction per command."""

from __future__ import annotations

import re
import sys
from datetime import datetime

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy.exc import SQLAlchemyError

from app.audit import CLI
from app.audit.trail import check_chain, record_verification
from app.extensions import db
from app.scopes import Scope


def _commit() -> None:
    db.session.commit()


def _fail(message: str) -> None:
    db.session.rollback()
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


demo = AppGroup("demo", help="Demo data for a laptop.")


@demo.command("load")
def demo_load() -> None:
    """Load the demo data (idempotent)."""
    if current_app.config["RELAIS_ENV"] == "production":
        _fail("demo data is refused in production")
    from app.demo import load_demo

    lines = load_demo()
    _commit()
    click.echo("Demo data loaded.")
    for line in lines:
        click.echo(f"  {line}")


api_client = AppGroup("api-client", help="DPI API clients.")


@api_client.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, metavar="SCOPE",
              help="a scope the client holds (repeat for several): "
                   + ", ".join(s.value for s in Scope)
                   + "; without it, every scope but documents:admin")
def api_client_create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a client and print its bearer token once."""
    from app.dispatch.clients import ClientError, create_client

    try:
        client, token = create_client(name, CLI, scopes or None)
    except ClientError as error:
        _fail(str(error))
    _commit()
    click.echo(f"API client {name} created, scopes: {' '.join(sorted(client.scopes))}")
    click.echo("Its bearer token, shown only now:")
    click.echo(token)


@api_client.command("revoke")
@click.argument("name")
def api_client_revoke(name: str) -> None:
    """Revoke a client at once."""
    from app.dispatch.clients import ClientError, revoke_client

    try:
        revoke_client(name, CLI)
    except ClientError as error:
        _fail(str(error))
    _commit()
    click.echo(f"API client {name} revoked.")


doctors = AppGroup("doctors", help="City doctors.")


@doctors.command("enrol")
@click.argument("gln")
@click.option("--family-name", required=True)
@click.option("--given-name", required=True)
@click.option("--email", required=True)
@click.option("--mobile", required=True,
              help="a mobile number, e.g. +41791234567 or 079 123 45 67 (stored in E.164)")
def doctors_enrol(gln: str, family_name: str, given_name: str, email: str, mobile: str) -> None:
    """Create an active SMS-mode doctor whose phone was verified elsewhere."""
    from app.staff.enrolment import EnrolmentError, enrol_sms_doctor

    try:
        enrolled = enrol_sms_doctor(gln, family_name, given_name, email, mobile, CLI)
    except EnrolmentError as error:
        _fail(str(error))
    _commit()
    click.echo(f"login: {enrolled.login}")
    click.echo(f"temporary password: {enrolled.temporary_password}")


users = AppGroup("users", help="Hospital staff and desk accounts.")


@users.command("create-staff")
@click.argument("login")
@click.option("--role", required=True, metavar="staff|desk", help="staff or desk")
def users_create_staff(login: str, role: str) -> None:
    """Create a staff or desk account; print its temporary password and TOTP URI once."""
    from app.staff.accounts import StaffError, create_staff

    try:
        _, password, uri = create_staff(login, role, CLI)
    except StaffError as error:
        _fail(str(error))
    _commit()
    click.echo(f"login: {login}")
    click.echo(f"temporary password: {password}")
    click.echo(f"TOTP provisioning URI: {uri}")


@users.command("deactivate")
@click.argument("login")
def users_deactivate(login: str) -> None:
    """End a staff account at once."""
    from app.staff.accounts import StaffError, deactivate_staff

    try:
        deactivate_staff(login, CLI)
    except StaffError as error:
        _fail(str(error))
    _commit()
    click.echo(f"Staff account {login} deactivated.")


@users.command("reset-totp")
@click.argument("login")
def users_reset_totp(login: str) -> None:
    """Force a new authenticator enrolment; print the new TOTP URI once."""
    from app.staff.accounts import StaffError, reset_totp

    try:
        uri = reset_totp(login, CLI)
    except StaffError as error:
        _fail(str(error))
    _commit()
    click.echo(f"TOTP provisioning URI: {uri}")


documents = AppGroup("documents", help="Documents at rest.")


@documents.command("rotate-keys")
def documents_rotate_keys() -> None:
    """Re-encrypt every document under the first key of DOCUMENT_KEYS (a commit per batch)."""
    from app.dispatch.keys import rotate_key_batch

    changed, cursor = 0, 0
    failed: list[str] = []
    while True:
        result = rotate_key_batch(CLI, after_id=cursor)
        _commit()
        db.session.expunge_all()  # keep memory flat: ciphertexts can be large
        if result.last_id is None:
            break
        changed += result.changed
        failed.extend(result.failed)
        cursor = result.last_id
    click.echo(f"{changed} document(s) re-encrypted.")
    from app.auth.staff_factors import rotate_totp_keys

    secrets_moved = rotate_totp_keys(CLI)
    _commit()
    click.echo(f"{secrets_moved} staff authenticator secret(s) re-sealed.")
    if failed:
        click.echo(f"error: {len(failed)} document(s) failed their integrity check and were "
                   f"left as they were: {', '.join(failed)}", err=True)
        sys.exit(1)


@documents.command("purge-expired")
@click.option("--dry-run", is_flag=True, help="Print how many would be purged; change nothing.")
@click.option("--before", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              metavar="YYYY-MM-DD",
              help="Only documents signed before this day (never one still within retention).")
def documents_purge_expired(dry_run: bool, before: datetime | None) -> None:
    """Delete the content of documents whose retention (DOCUMENT_RETENTION_YEARS after the
    signature) has passed; metadata, hash and deliveries stay. A commit per batch."""
    from app.dispatch.retention import count_expired, cutoff, purge_batch, retention_years

    limit = cutoff(before=before.date() if before else None)
    if dry_run:
        click.echo(f"{count_expired(limit)} document(s) would be purged "
                   f"(retention {retention_years()} years); nothing changed.")
        return
    purged = 0
    while True:
        result = purge_batch(CLI, limit)
        _commit()
        db.session.expunge_all()
        purged += result.purged
        if not result.more:
            break
    click.echo(f"{purged} document(s) purged (retention {retention_years()} years).")


dispatch = AppGroup("dispatch", help="The dispatch engine.")


@dispatch.command("release-due")
def dispatch_release_due() -> None:
    """Release held documents whose time has come (re-checking consent, death, recipient)."""
    from app.audit.trail import SYSTEM
    from app.dispatch.release import release_due

    delivered = cancelled = 0
    while True:
        d, c = release_due(SYSTEM)
        _commit()
        delivered, cancelled = delivered + d, cancelled + c
        if d + c == 0:
            break
    click.echo(f"released: {delivered} delivered, {cancelled} cancelled")


audit = AppGroup("audit", help="The audit trail.")


@audit.command("verify")
@click.option(
    "--anchor",
    metavar="ID:HASH",
    help="An event id and hash kept outside Relais (the DPI's copy of the feed).",
)
def audit_verify(anchor: str | None) -> None:
    """Check the hash chain; exit 1 with the first broken entry on failure."""
    anchor_pair: tuple[int, str] | None = None
    if anchor:
        match = re.fullmatch(r"([0-9]+):([0-9a-f]{64})", anchor)
        if match is None:
            _fail("--anchor must read ID:HASH (64 hex digits)")
            return
        anchor_pair = (int(match.group(1)), match.group(2))
    result = check_chain(anchor_pair)
    broken = result.broken
    if broken is not None:
        click.echo(f"audit trail BROKEN at {broken}", err=True)
    else:
        click.echo("audit trail intact")
    # Each verification is itself an event, so that the desk's page shows the chain's state
    # without walking the whole trail at every view.
    try:
        record_verification(CLI, result, anchor_pair)
        _commit()
    except (RuntimeError, SQLAlchemyError) as error:  # e.g. the head row is gone
        db.session.rollback()
        click.echo(f"warning: the verification could not be recorded ({type(error).__name__})",
                   err=True)
    if broken is not None:
        sys.exit(1)


def register_cli(app: Flask) -> None:
    """Every ``flask --app wsgi`` command group, in one list."""
    from app.auth.saml_settings import hin_cli
    from app.cli.worker import notifications, worker

    for group in (demo, api_client, doctors, users, documents, dispatch, audit, hin_cli,
                  notifications, worker):
        app.cli.add_command(group)


__all__ = ["register_cli"]
