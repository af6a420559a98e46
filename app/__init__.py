"""The Relais application factory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

ROOT = Path(__file__).resolve().parent.parent


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings, extensions, blueprints, CLI. No I/O beyond reading settings."""
    from app.config import load_settings

    app = Flask(
        __name__,
        instance_path=str(ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    settings = load_settings(app.instance_path, overrides)
    app.config.from_mapping(settings.flask_config())
    app.extensions["relais.settings"] = settings
    if settings.proxy_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Behind the TLS proxy: take the client's address, scheme and host from it, so that
        # request.is_secure (HSTS, secure cookies) and external URLs (SAML, emails) are right.
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )

    from app import models  # noqa: F401 - registers the tables
    from app.extensions import babel, csrf, db, migrate
    from app.web.i18n import install_template_gettext, select_locale, select_timezone

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    babel.init_app(
        app,
        locale_selector=select_locale,
        timezone_selector=select_timezone,
        default_translation_directories=str(ROOT / "translations"),
    )
    install_template_gettext(app)

    from app.auth.limits import init_limits
    from app.auth.session import init_session
    from app.auth.views import bp as auth_bp
    from app.dispatch.api import bp as api_bp
    from app.staff.desk import bp as desk_bp
    from app.web import init_web
    from app.web.views import bp as web_bp

    init_web(app)
    init_session(app)
    init_limits(app)
    app.register_blueprint(web_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(desk_bp)
    from app.workspace.documents import bp as documents_bp

    app.register_blueprint(documents_bp)
    csrf.exempt(api_bp)  # bearer-token API: no cookies, so no CSRF
    from app.auth.hin import bp as hin_bp

    app.register_blueprint(hin_bp)
    from app.workspace.help import bp as help_bp
    from app.workspace.patients import bp as patients_bp

    app.register_blueprint(patients_bp)
    app.register_blueprint(help_bp)
    if settings.saml_dev_idp:  # never in production: load_settings refuses it there
        from app.auth.dev_idp import bp as dev_idp_bp

        app.register_blueprint(dev_idp_bp)

    from app.cli import register_cli

    register_cli(app)
    from app.auth.saml_settings import hin_cli

    app.cli.add_command(hin_cli)
    from app.notify.cli import notifications, worker
    from app.workspace.profile import bp as profile_bp

    app.register_blueprint(profile_bp)
    from app.audit.viewer import bp as audit_viewer_bp
    from app.staff.admin import bp as desk_admin_bp
    from app.staff.desk_approvals import bp as desk_approvals_bp
    from app.staff.doctors import bp as staff_doctors_bp
    from app.staff.patients import bp as staff_patients_bp
    from app.staff.worklist import bp as worklist_bp

    for staff_bp in (staff_doctors_bp, staff_patients_bp, worklist_bp, desk_admin_bp,
                     desk_approvals_bp, audit_viewer_bp):
        app.register_blueprint(staff_bp)

    app.cli.add_command(notifications)
    app.cli.add_command(worker)
    return app
