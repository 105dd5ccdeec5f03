"""Persistence: engine and sessions, ORM tables, queries and migrations."""
