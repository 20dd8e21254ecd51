"""Storage: tables, the engine, migrations and repository functions."""

from __future__ import annotations


class SchemaNotCurrent(Exception):
    """The database's migrations differ from this kmon's; ``str()`` says what to run."""
