"""The web dashboard: one page served by the API app; everything it shows and does
goes through the public API (STYLE.md §10). Chart.js comes from npm's installed copy
under `dashboard/node_modules`, never from a CDN or a hand-copied file."""

from __future__ import annotations

from pathlib import Path

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    render_template,
    send_file,
)
from flask.typing import ResponseReturnValue

from common.data.synthetic import SCENARIOS

NODE_MODULES = Path(__file__).resolve().parent / "node_modules"
VENDOR_FILES = {"chart.umd.js": NODE_MODULES / "chart.js" / "dist" / "chart.umd.js"}
# No inline script or style, nothing from elsewhere: data shown as text cannot run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dashboard/static",
)


@bp.get("/")
def index() -> Response:
    """The dashboard: overview, models, jobs, alerts, API tester, demo."""
    page = render_template(
        "index.html",
        charts=VENDOR_FILES["chart.umd.js"].is_file(),
        scenarios=SCENARIOS,
        demo=current_app.extensions["settings"].demo_on,
    )
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/dashboard/vendor/<name>")
def vendor(name: str) -> ResponseReturnValue:
    """A front-end library from npm's installed copy (`make install` puts it there)."""
    path = VENDOR_FILES.get(name)
    if path is None or not path.is_file():
        abort(404)
    return send_file(path, mimetype="text/javascript", max_age=3600)
