"""Adapters over `common/`: the REST API, the Celery worker, beat and the CLI."""
