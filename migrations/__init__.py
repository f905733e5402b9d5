"""Alembic migrations for the astertrack core models (version table: astertrack_alembic_version)."""
