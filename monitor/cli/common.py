"""What every ``kmon`` command shares: the settings, errors, the database, options.

Imports stay light here (click and the leaves): ``kmon --help`` loads this module and
every command module, and each command imports what it needs when it runs.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from monitor.cli.output import FORMATS
from monitor.timefmt import parse_when, utcnow

if TYPE_CHECKING:
    from monitor.config import Settings

T = TypeVar("T")

# Row ids are BigInteger columns: anything past them can name no row and would
# overflow the database driver.
ROW_ID = click.IntRange(1, 2**63 - 1)

format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True
)


class OneLineUsageError(click.UsageError):
    """A usage error shown as one ``kmon: …`` line, like every other error of kmon."""

    def show(self, file: Any = None) -> None:
        click.echo(f"kmon: {self.format_message()}", file=file, err=True)


class KmonGroup(click.Group):
    """The ``kmon`` group: a bad option or argument anywhere below it is one line."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc) from None


def _one_line(exc: click.UsageError) -> click.UsageError:
    # Help shown for a bare group is not an error message to squeeze.
    if isinstance(exc, click.exceptions.NoArgsIsHelpError | OneLineUsageError):
        return exc
    return OneLineUsageError(exc.format_message(), ctx=exc.ctx)


class State:
    """What the command group passes to its commands: where the config is."""

    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            import uuid

            import structlog

            from monitor.config import ConfigError, load_settings
            from monitor.logs import configure_logging

            try:
                self._settings = load_settings(self.config)
            except ConfigError as exc:
                fail(f"config error: {exc}", code=2)
            configure_logging(self._settings.log_format, self._settings.log_level)
            structlog.contextvars.bind_contextvars(run_id=uuid.uuid4().hex[:12])
        return self._settings


def fail(message: str, *, code: int = 1) -> NoReturn:
    click.echo(f"kmon: {message}", err=True)
    sys.exit(code)


def run_async(func: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; database outages become one clear line and exit 1."""
    import asyncio
    import gc

    from sqlalchemy.exc import DBAPIError, OperationalError

    from monitor.db import SchemaNotCurrent
    from monitor.rules import RulesError

    # See monitor.cli.main: only start-up runs without the collector. What start-up
    # made (modules, classes, the settings) lives as long as the process: frozen, the
    # collections during the work do not walk it again and again.
    gc.freeze()
    gc.enable()
    try:
        return asyncio.run(func())  # type: ignore[arg-type]
    except SchemaNotCurrent as exc:
        fail(str(exc))
    except RulesError as exc:
        fail(f"rules error: {exc}", code=2)
    except (OperationalError, DBAPIError, OSError) as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")


def when(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """A click callback turning ``--since``/``--until`` text into UTC."""
    if value is None:
        return None
    try:
        return parse_when(value, now=utcnow())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def stock_code(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback checking a KRX stock code (six characters, ``035420``)."""
    if value is None:
        return None
    code = value.strip().upper()
    if not re.fullmatch(r"[0-9][0-9A-Z]{5}", code):
        raise click.BadParameter(f"{value!r} is not a KRX stock code (six characters: 035420)")
    return code


def to_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)


def query(state: State, func: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``func(session)`` against the configured database and return its result."""
    from monitor.db.engine import make_engine, make_sessionmaker

    async def go() -> T:
        engine = make_engine(state.settings.database.url.get_secret_value(), null_pool=True)
        try:
            async with make_sessionmaker(engine)() as session:
                return await func(session)
        finally:
            await engine.dispose()

    return run_async(go)
