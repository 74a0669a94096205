"""What the app keeps between requests: `tasks.connection.Postal` (settings, one Redis client,
one `Queue` per name), stored in `app.extensions` by `create_app`."""

from __future__ import annotations

from flask import current_app

from tasks.connection import Postal as Postal  # re-exported: the views import it from here


def postal() -> Postal:
    """The current app's `Postal` (inside a request or app context)."""
    state: Postal = current_app.extensions["postal"]
    return state
