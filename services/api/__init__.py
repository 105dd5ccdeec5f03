"""The REST API and dashboard host (Flask, served by gunicorn)."""
