"""The Celery worker: task modules under `tasks/`, app in `celery_app.py`."""
