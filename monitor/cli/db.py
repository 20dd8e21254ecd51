"""``kmon db``: migrations."""

from __future__ import annotations

import sys
from typing import Any

import click

from monitor.cli.common import State, run_async


@click.group()
def db() -> None:
    """Database migrations."""


def _engine(state: State) -> Any:
    from monitor.db.engine import make_engine

    return make_engine(state.settings.database.url.get_secret_value(), null_pool=True)


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_obj
def db_upgrade(state: State, revision: str) -> None:
    """Apply migrations up to REVISION."""
    from monitor.db import migrate

    async def go() -> set[str]:
        engine = _engine(state)
        try:
            await migrate.upgrade(engine, revision)
            return await migrate.current_revisions(engine)
        finally:
            await engine.dispose()

    click.echo(f"database at {', '.join(sorted(run_async(go)))}")


@db.command("current")
@click.pass_obj
def db_current(state: State) -> None:
    """Print the database's revision and whether it is current; exit 1 if behind."""
    from monitor.db import migrate

    async def go() -> set[str]:
        engine = _engine(state)
        try:
            return await migrate.current_revisions(engine)
        finally:
            await engine.dispose()

    current, heads = run_async(go), migrate.head_revisions()
    have = ", ".join(sorted(current)) or "empty"
    if current == heads:
        click.echo(f"{have} (current)")
    else:
        click.echo(f"{have} (behind: head is {', '.join(sorted(heads))}; run `kmon db upgrade`)")
        sys.exit(1)
