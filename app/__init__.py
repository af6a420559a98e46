"""The Relais application factory."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from pathlib import Path
from typing import Any

from flask import Flask

ROOT = Path(__file__).resolve().parent.parent

#: Every blueprint of the app, in one list: the module that defines it as ``bp``.
BLUEPRINTS = (
    # the site: home, language, health, help and privacy
    "app.site.views",
    "app.site.help",
    # signing in and out: password and SMS code, HIN (SAML)
    "app.auth.views",
    "app.auth.hin",
    # the doctor's side: Mes documents, Mes patients, Mon profil
    "app.inbox.documents",
    "app.inbox.patients",
    "app.profile.views",
    # the hospital's staff and desk
    "app.staff.desk",
    "app.staff.doctors",
    "app.staff.patients",
    "app.staff.worklist",
    "app.staff.admin",
    "app.staff.desk_approvals",
    "app.staff.audit",
    # the DPI's API
    "app.dispatch.api",
)
#: The development identity provider, registered only when SAML_DEV_IDP is on (never in production).
DEV_IDP_BLUEPRINT = "app.auth.dev_idp"


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
    from app.web import init_web

    init_web(app)
    init_session(app)
    init_limits(app)
    for module in BLUEPRINTS:
        app.register_blueprint(import_module(module).bp)
    csrf.exempt(import_module("app.dispatch.api").bp)  # bearer-token API: no cookies, no CSRF
    if settings.saml_dev_idp:  # never in production: load_settings refuses it there
        from app.auth.dev_idp import PEOPLE
        from app.demo import dev_idp_people

        app.extensions[PEOPLE] = dev_idp_people()
        app.register_blueprint(import_module(DEV_IDP_BLUEPRINT).bp)

    from app.cli import register_cli

    register_cli(app)
    return app
