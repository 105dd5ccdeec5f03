"""gunicorn's entry point.

`gunicorn -c services/api/gunicorn.conf.py services.api.wsgi:app`
"""

from __future__ import annotations

from common.config import get_settings
from common.logging import configure_logging
from services.api.app import create_app

settings = get_settings()
configure_logging(settings)
app = create_app(settings)
app.extensions["model_cache"].refresh()  # load and warm before the first request
