"""The web dashboard: pages served by the API app, data read through the public API."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dashboard/static",
)


@bp.get("/")
def index() -> str:
    """The overview page."""
    return render_template("index.html")
