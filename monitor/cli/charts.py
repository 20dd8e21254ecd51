"""What ``kmon signals chart`` and ``kmon quotes chart`` share: the names charts show
and writing a PNG to a file or to standard output."""

from __future__ import annotations

import sys
from pathlib import Path

from monitor.cli.common import State, fail


def chart_names(state: State) -> dict[str, str]:
    """Tickers' names as charts show them: the Korean name, the KOSPI as 코스피."""
    names = {t.code: t.name_ko for t in state.settings.quotes.tickers}
    names.setdefault("KOSPI", "코스피")
    return names


def write_png(png: bytes, output: str) -> None:
    """``png`` to the file ``output``, or to standard output for ``-``."""
    if output == "-":
        sys.stdout.buffer.write(png)
        sys.stdout.buffer.flush()
        return
    try:
        Path(output).write_bytes(png)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")


def check_output(output: str) -> None:
    """A usage error (exit 2) for an output that cannot be a PNG file, before any work."""
    if output != "-" and not output.lower().endswith(".png"):
        fail(f"-o {output}: the chart is a PNG; name a .png file or - for standard output", code=2)
