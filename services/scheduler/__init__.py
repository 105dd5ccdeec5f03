"""Celery beat: the periodic plan as data (`schedule.py`) and its app (`beat.py`)."""
