"""The desk's administration: failed notification emails, API clients, staff accounts.

Desk only. The lists are read-only views of the outbox, of ``api_clients`` and of
``staff_users``; each action is a POST (with the CSRF token) that calls a service of
``app.notify.outbox``, ``app.dispatch.clients`` or ``app.staff.accounts``, which audits in the
same transaction, and commits once. A second click changes nothing and says so. Creating
accounts and API clients stays on the command line, where a token or a password is shown once.
"""

from __future__ import annotations

from typing import TypeVar

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response as BaseResponse

from app.auth.lockout import is_locked
from app.auth.session import current_principal, requires
from app.dispatch.clients import revoke_client
from app.extensions import db
from app.models import ApiClient, Notification, StaffUser
from app.notify import outbox
from app.scopes import Scope
from app.staff import accounts
from app.staff.forms import ButtonForm

bp = Blueprint("desk_admin", __name__, url_prefix="/staff/desk")

T = TypeVar("T")

#: Failed emails shown at once (newest first); the rest wait until these are dealt with.
FAILED_SHOWN = 200

KIND_LABELS = {
    "arrival": _l("Nouveaux documents"),
    "digest": _l("Résumé du jour"),
    "email_confirm": _l("Confirmation d'une nouvelle adresse e-mail"),
    "email_changed": _l("Avis de changement d'adresse e-mail"),
    "change_requested": _l("Avis d'une demande de changement de la connexion"),
    "account_changed": _l("Avis d'un changement de la connexion"),
}
RESEND_REFUSALS = {
    outbox.NOT_FAILED: _l("Cet e-mail n'est plus en échec : il a déjà été remis dans la file "
                          "d'envoi."),
    outbox.LINK_GONE: _l("Pas de renvoi : le lien de confirmation n'est plus valable (il est "
                         "effacé après l'échec et expire après 24 heures). Le médecin doit "
                         "redemander le changement d'adresse dans « Mon profil »."),
    outbox.DOCTOR_INACTIVE: _l("Pas de renvoi : le compte du médecin n'est pas actif."),
    outbox.NO_ADDRESS: _l("Pas de renvoi : le médecin n'a pas d'adresse e-mail. Vérifiez-la "
                          "avec lui."),
    outbox.NOTIFICATIONS_OFF: _l("Pas de renvoi : le médecin ne souhaite plus recevoir d'e-mail "
                                 "de notification."),
}
#: What each API client scope allows, in words (the list itself: app/scopes.py).
SCOPE_LABELS = {
    Scope.DOCUMENTS_WRITE: _l("Envoyer des documents ; retirer ceux que ce client a envoyés"),
    Scope.DOCUMENTS_READ: _l("Lire l'état des documents que ce client a envoyés"),
    Scope.DOCUMENTS_ADMIN: _l("Lire et retirer les documents de tous les clients"),
    Scope.CONSENTS_WRITE: _l("Enregistrer et révoquer des consentements"),
    Scope.PATIENTS_WRITE: _l("Enregistrer le décès d'un patient"),
    Scope.DOCTORS_READ: _l("Consulter l'annuaire des médecins"),
    Scope.EVENTS_READ: _l("Lire tout le journal d'audit (le flux des événements)"),
}
ROLE_LABELS = {
    "staff": _l("Personnel hospitalier"),
    "desk": _l("Guichet"),
}
STAFF_REFUSALS = {
    accounts.SELF: _l("Vous ne pouvez pas désactiver votre propre compte."),
    accounts.LAST_DESK: _l("C'est le dernier compte actif du guichet : il ne peut pas être "
                           "désactivé."),
    accounts.TOTP_PENDING: _l("Ce compte n'a jamais confirmé son application d'authentification : "
                              "il ne peut pas être réactivé. Créez un nouveau compte en ligne de "
                              "commande."),
}


@bp.app_template_global()
def desk_admin_labels() -> dict[str, object]:
    return {"kinds": KIND_LABELS, "refusals": RESEND_REFUSALS, "roles": ROLE_LABELS,
            "staff_refusals": STAFF_REFUSALS, "scopes": SCOPE_LABELS}


def _or_404(model: type[T], row_id: int) -> T:
    found = db.session.get(model, row_id)
    if found is None:
        abort(404)
    return found


# --- failed notification emails ----------------------------------------------------------------


@bp.get("/notifications")
@requires("desk")
def notifications() -> str:
    rows = outbox.failed_notifications(limit=FAILED_SHOWN)
    return render_template(
        "staff/admin/notifications.html", rows=rows, button_form=ButtonForm(formdata=None),
        refusals={row.id: outbox.resend_refusal(row) for row in rows},
        total=outbox.failed_count(), shown=FAILED_SHOWN,
    )


@bp.post("/notifications/<int:notification_id>/resend")
@requires("desk")
def resend(notification_id: int) -> BaseResponse:
    row = _or_404(Notification, notification_id)
    try:
        outbox.requeue_failed(row, current_principal().actor)
    except outbox.ResendRefused as refused:
        db.session.rollback()
        category = "info" if refused.reason == outbox.NOT_FAILED else "error"
        flash(str(RESEND_REFUSALS[refused.reason]), category)
    else:
        db.session.commit()
        flash(_("L'e-mail est remis dans la file d'envoi : il partira dans quelques minutes."),
              "success")
    return redirect(url_for("desk_admin.notifications"), code=303)


# --- staff accounts and API clients --------------------------------------------------------------


@bp.get("/accounts")
@requires("desk")
def accounts_page() -> str:
    me = current_principal().staff
    staff = db.session.scalars(select(StaffUser).order_by(StaffUser.login)).all()
    clients = db.session.scalars(
        select(ApiClient).options(selectinload(ApiClient.scope_links)).order_by(ApiClient.name)
    ).all()
    return render_template(
        "staff/admin/accounts.html", staff=staff, clients=clients, me=me, is_locked=is_locked,
        button_form=ButtonForm(formdata=None),
        deactivation_refusal={u.id: accounts.desk_deactivation_refusal(u, me)
                              for u in staff if u.active},
        reactivation_refusal={u.id: accounts.reactivation_refusal(u)
                              for u in staff if not u.active},
    )


def _back_to_accounts() -> BaseResponse:
    return redirect(url_for("desk_admin.accounts_page"), code=303)


@bp.post("/accounts/staff/<int:user_id>/deactivate")
@requires("desk")
def staff_deactivate(user_id: int) -> BaseResponse:
    user = _or_404(StaffUser, user_id)
    principal = current_principal()
    try:
        changed = accounts.deactivate_staff_at_desk(user, principal.staff, principal.actor)
    except accounts.DeskRefusal as refusal:
        db.session.rollback()
        flash(str(STAFF_REFUSALS[refusal.code]), "error")
        return _back_to_accounts()
    db.session.commit()
    if changed:
        flash(_("Le compte %(login)s est désactivé : ses sessions sont fermées.",
                login=user.login), "success")
    else:
        flash(_("Le compte %(login)s était déjà désactivé.", login=user.login), "info")
    return _back_to_accounts()


@bp.post("/accounts/staff/<int:user_id>/reactivate")
@requires("desk")
def staff_reactivate(user_id: int) -> BaseResponse:
    user = _or_404(StaffUser, user_id)
    try:
        changed = accounts.reactivate_staff(user, current_principal().actor)
    except accounts.DeskRefusal as refusal:
        db.session.rollback()
        flash(str(STAFF_REFUSALS[refusal.code]), "error")
        return _back_to_accounts()
    db.session.commit()
    if changed:
        flash(_("Le compte %(login)s est réactivé, avec le même mot de passe et la même "
                "application d'authentification.", login=user.login), "success")
    else:
        flash(_("Le compte %(login)s était déjà actif.", login=user.login), "info")
    return _back_to_accounts()


@bp.get("/accounts/clients/<int:client_id>/revoke")
@requires("desk")
def client_revoke_confirm(client_id: int) -> str:
    """The confirmation step: what revoking means, and one explicit button."""
    return render_template("staff/admin/revoke.html", client=_or_404(ApiClient, client_id),
                           button_form=ButtonForm(formdata=None))


@bp.post("/accounts/clients/<int:client_id>/revoke")
@requires("desk")
def client_revoke(client_id: int) -> BaseResponse:
    client = _or_404(ApiClient, client_id)
    if client.revoked_at is not None:
        flash(_("Le client %(name)s était déjà révoqué.", name=client.name), "info")
        return _back_to_accounts()
    revoke_client(client.name, current_principal().actor)
    db.session.commit()
    flash(_("Le client %(name)s est révoqué : l'API refuse désormais son jeton.",
            name=client.name), "success")
    return _back_to_accounts()
