"""Storage: tables, the engine, migrations and repository functions."""

from __future__ import annotations

# The head revisions of the migrations this kmon ships (alembic/versions). A start-up
# that finds the database at these knows it is current without Alembic, which reads
# every migration script to learn them (a tenth of a second of each `kmon poll`);
# tests/monitor/db/test_migrations.py holds this set to Alembic's own heads.
SCHEMA_HEADS = frozenset({"0007"})


class SchemaNotCurrent(Exception):
    """The database's migrations differ from this kmon's; ``str()`` says what to run."""
