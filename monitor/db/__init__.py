"""Storage: tables, the engine, migrations and repository functions."""
