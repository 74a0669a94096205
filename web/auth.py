"""Who may call the API: bearer tokens from `POSTAL_API_TOKENS`, compared in constant time.

- With tokens configured, every route needs one except `GET /healthz` (load balancers) and
  `GET /`; reads of jobs, queues and workers too unless `POSTAL_PUBLIC_READS=true`. The
  dashboard at `/rq` always needs one (some of its GET routes change state); browsers can log in
  with HTTP Basic auth, any user name and a token as the password.
- With no token configured the API is open, and `create_app` refuses any non-loopback
  `POSTAL_HOST`, so an open API is never reachable from another machine by accident.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging

from flask import Flask, Response, request

from tasks.settings import Settings, SettingsError
from web.errors import error_response

log = logging.getLogger("postal.auth")

OPEN_ROUTES = {
    ("GET", "/healthz"),
    ("HEAD", "/healthz"),
    ("GET", "/"),
    ("HEAD", "/"),
    ("GET", "/openapi.json"),
}
READ_METHODS = {"GET", "HEAD"}
DASHBOARD_PREFIX = "/rq"


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """Refuse to serve an open API beyond loopback; say so when it is open at all."""
    if settings.api_tokens:
        return
    if not is_loopback(settings.api_host):
        raise SettingsError(
            f"POSTAL_HOST={settings.api_host} would expose an API without authentication; "
            "set POSTAL_API_TOKENS (comma-separated, 16+ characters each) or bind to 127.0.0.1"
        )
    log.warning("no POSTAL_API_TOKENS: the API is open and bound to loopback (%s) only", settings.api_host)


def presented_token() -> str | None:
    """The token in `Authorization: Bearer <t>`, or the password of `Authorization: Basic`."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def token_valid(presented: str, tokens: tuple[str, ...]) -> bool:
    """Compare against every token, each in constant time, with no early exit."""
    candidate = presented.encode()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(candidate, token.encode())
    return matched


def install_auth(app: Flask, settings: Settings) -> None:
    """Check the exposure rule now and guard every request from then on."""
    check_exposure(settings)
    if not settings.api_tokens:
        return

    @app.before_request
    def _require_token() -> tuple[Response, int] | None:
        method, path = request.method, request.path
        if (method, path) in OPEN_ROUTES or method == "OPTIONS":
            return None
        dashboard = path == DASHBOARD_PREFIX or path.startswith(DASHBOARD_PREFIX + "/")
        if settings.public_reads and method in READ_METHODS and not dashboard:
            return None
        presented = presented_token()
        if presented is not None and token_valid(presented, settings.api_tokens):
            return None
        # A browser shows this body when its login prompt is cancelled: tell the person what to type.
        message = (
            "log in with any user name and an API token as the password"
            if dashboard
            else "a valid token is required: Authorization: Bearer <token>"
        )
        response, status = error_response(401, "unauthorized", message)
        response.headers["WWW-Authenticate"] = (
            'Basic realm="postal"' if dashboard else 'Bearer realm="postal"'
        )
        return response, status
