"""gunicorn's entry point.

`gunicorn -c services/api/gunicorn.conf.py services.api.wsgi:app`
"""

from __future__ import annotations

import atexit

from common.config import get_settings
from common.logging import configure_logging
from services.api.app import create_app, start_background, stop_background

settings = get_settings()
configure_logging(settings)
app = create_app(settings)
start_background(app)  # loads and warms the model before the first request
atexit.register(stop_background, app)  # flushes the prediction log on exit
