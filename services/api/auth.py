"""API-key checks: mutating calls and result downloads always; /predict and /feedback
when configured; every other read when the API is reachable beyond loopback or when
configured (the probes only when configured)."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, TypeVar, cast

from common.config import Settings
from common.errors import UnauthorizedError
from services.api.context import this_app, this_request

F = TypeVar("F", bound=Callable[..., Any])

HOW_TO = "send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def _supplied_keys() -> list[str]:
    """Every key the request presents. An Authorization header that is not
    `Bearer <key>` counts as a wrong key: it must not pass on another header's key."""
    keys = []
    headers = this_request().headers
    if "Authorization" in headers:
        scheme, _, key = headers["Authorization"].partition(" ")
        keys.append(key.strip() if scheme.lower() == "bearer" else "")
    if "X-API-Key" in headers:
        keys.append(headers["X-API-Key"])
    return keys


def check_api_key(settings: Settings) -> None:
    """Raise `UnauthorizedError` unless the request carries the configured key."""
    if not settings.api_key:
        raise UnauthorizedError(
            "this server has no API key configured (MODELOPS_API_KEY); "
            "calls that need one are refused"
        )
    supplied = _supplied_keys()
    if not supplied:
        raise UnauthorizedError(f"an API key is required; {HOW_TO}")
    expected = settings.api_key.encode()
    # Every presented key must match; compare all of them, in constant time each.
    matches = [hmac.compare_digest(key.encode(), expected) for key in supplied]
    if not all(matches):
        raise UnauthorizedError(f"wrong API key; {HOW_TO}")


def require_api_key(view: F) -> F:
    """Decorate a mutating view."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check_api_key(this_app().extensions["settings"])
        return view(*args, **kwargs)

    wrapper.__auth__ = "api_key"  # type: ignore[attr-defined]  # for the OpenAPI
    return cast(F, wrapper)


def require_predict_key(view: F) -> F:
    """Decorate /predict and /feedback: checked only with MODELOPS_PREDICT_AUTH."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings = this_app().extensions["settings"]
        if settings.predict_auth:
            check_api_key(settings)
        return view(*args, **kwargs)

    wrapper.__auth__ = "predict"  # type: ignore[attr-defined]  # for the OpenAPI
    return cast(F, wrapper)


# Pages and files that hold no data (the dashboard and Swagger UI read everything
# through the API, with the key), and the probes, open unless MODELOPS_PROBES_AUTH.
PAGES = frozenset({
    "dashboard.index", "dashboard.vendor", "dashboard.static",
    "docs.docs", "docs.docs_asset", "docs.static",
})  # fmt: skip
PROBES = frozenset({"/livez", "/readyz", "/metrics/prometheus"})  # by route
READS = frozenset({"GET", "HEAD"})


def read_needs_key(settings: Settings, route: str) -> bool:
    """Whether a read of `route` needs the key: one rule for the check below and for
    the OpenAPI document's `security`."""
    return settings.probes_auth if route in PROBES else settings.reads_need_key


def check_read_access() -> None:
    """Before every request: a read needs the key when the settings say reads do.
    Writes are checked by their views' decorators; an unknown path is a 404."""
    settings: Settings = this_app().extensions["settings"]
    request = this_request()
    rule = request.url_rule
    if request.method not in READS or rule is None or request.endpoint in PAGES:
        return
    if read_needs_key(settings, rule.rule):
        check_api_key(settings)
