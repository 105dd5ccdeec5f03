"""ModelOps core: domain logic shared by the API, the worker and the scheduler.

Nothing in this package imports Flask or Celery (``common/queue.py`` excepted).
"""
