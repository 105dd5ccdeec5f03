"""The WSGI app, loaded in each API process: `python -m services.api.serve`
(services/api/serve.py) serves it.

Each API process limits its malloc arenas, loads and warms its model before the
first request, and writes its buffered prediction log when it ends.
"""

from __future__ import annotations

from multiprocessing import util

from common.config import get_settings
from common.logging import configure_logging
from common.memory import limit_arenas
from services.api.app import create_app, start_background, stop_background
from services.api.prometheus import forget_dead_processes

# Two malloc arenas for the process's many threads, not eight per core: a process
# serving many models keeps its RSS near what the models hold.
limit_arenas(2)
settings = get_settings()
configure_logging(settings)
forget_dead_processes()  # a replaced API process's live gauges
app = create_app(settings)
start_background(app)  # loads and warms the model before the first request
# The server's processes are multiprocessing children, which end without running
# atexit but with multiprocessing's finalizers; in any other host multiprocessing
# runs its finalizers from atexit. One finalizer writes the log either way.
util.Finalize(app, stop_background, args=(app,), exitpriority=10)
