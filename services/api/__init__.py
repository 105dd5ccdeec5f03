"""The REST API and dashboard host (Flask, served by granian: services/api/serve.py)."""
