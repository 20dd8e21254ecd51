"""Logging, configured once by the CLI entry point (never on import).

JSON lines (UTC ISO timestamp, level, event, bound context such as source and run
id) when stderr is not a terminal or when asked; readable console lines otherwise.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

LogFormat = Literal["auto", "json", "console"]


def configure_logging(
    fmt: LogFormat = "auto", level: str = "INFO", stream: TextIO | None = None
) -> None:
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor
    if use_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        # Not cached: tests and the CLI may configure logging more than once.
        cache_logger_on_first_use=False,
    )
    # Libraries that use the standard logging module (APScheduler, aiohttp) go to
    # the same stream, quieter, rendered the same way (one JSON object a line), so
    # their warnings are neither lost nor break a reader of the JSON lines.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    logging.basicConfig(
        handlers=[handler],
        level=max(logging.getLevelName(level), logging.WARNING),
        force=True,
    )
