"""Alembic migrations (package data: alembic.ini, env.py, script.py.mako, versions/).

Run them with `radiant db upgrade` or `activities.db.migrate.upgrade(owner_url)`.
"""
