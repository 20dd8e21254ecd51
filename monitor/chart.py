"""A move and its news on one chart: a pure function from series and events to a PNG.

:func:`render` draws, on one set of axes, the ticker's price, the index beside it
rebased to the ticker's first price (so the two lines start together and the gap
between them is the relative move), a vertical marker with a short label at each
event (a news item, a disclosure), and the move annotated in the corner: the
ticker's change over the window and the difference to the index's, in points.
Times are shown in KST. A missing series is said in the chart, not an error: what
exists is drawn.

matplotlib's object API only (``Figure`` with the Agg canvas): no pyplot, no global
``rcParams``, so renders in threads do not share state. Korean text is drawn with
NanumGothic, shipped in the ``koreanize-matplotlib`` package (SIL Open Font License
1.1); the font file is located without importing that package, whose import would
change matplotlib's global defaults. matplotlib is imported when a chart is drawn,
not when this module is, so commands that draw nothing do not pay for it.

:func:`render_async` runs a render in a worker thread and waits at most a given time.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.timefmt import KST

if TYPE_CHECKING:
    from matplotlib.font_manager import FontProperties

__all__ = [
    "EVENT_COLOUR",
    "RENDER_TIMEOUT",
    "Chart",
    "ChartEvent",
    "ChartSeries",
    "Rendered",
    "hangul_font",
    "relative_move",
    "render",
    "render_async",
]

# A render waits this long at most; past it the alert goes out without its chart.
RENDER_TIMEOUT = 10.0
# Drawn without antialiasing in these exact colours, so a marker is findable by pixel.
EVENT_COLOUR = (214, 39, 40)
_PRICE_COLOUR = "#1f4e9c"
_INDEX_COLOUR = "#8c8c8c"
_LABEL_MAX = 22  # characters of an event's label before "…"
_EVENTS_MAX = 8  # more events than this are counted in the corner, not drawn
_FONT_PACKAGE = "koreanize_matplotlib"
_FONT_FILE = "fonts/NanumGothic.ttf"
_EMPTY_SPAN = _EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PNG_OPTIONS = {"compress_level": 3, "optimize": False}


@dataclass(frozen=True)
class ChartSeries:
    """One line: ``points`` are (time, value) pairs, oldest first (naive times are UTC)."""

    ticker: str
    name: str
    points: tuple[tuple[datetime, float], ...]


@dataclass(frozen=True)
class ChartEvent:
    """A moment to mark: when the news broke, and a short label for it."""

    at: datetime
    label: str


@dataclass(frozen=True)
class Chart:
    """What to draw. ``intraday``: the points are quotes (times shown as hours),
    else daily closes (shown as days). ``missing``: what the caller looked for and did
    not find (\"KOSPI: no quotes\"), said in the chart. ``move``: the change % and the
    points beyond the index as a signal measured them, annotated instead of the lines'
    own change over the window. ``width``/``height`` in pixels."""

    title: str
    series: ChartSeries
    index: ChartSeries | None = None
    events: tuple[ChartEvent, ...] = ()
    intraday: bool = True
    missing: tuple[str, ...] = ()
    move: tuple[float, float | None] | None = None
    width: int = 800
    height: int = 420


@dataclass(frozen=True)
class Rendered:
    """A PNG and where its plot area lies: ``plot_box`` is (left, top, right, bottom)
    in image pixels (top-left origin) and ``span`` the times at its left and right
    edges, so a reader can say where a time falls."""

    png: bytes
    plot_box: tuple[float, float, float, float]
    span: tuple[datetime, datetime]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _num(value: datetime) -> float:
    """A time as matplotlib's date number (days since its epoch)."""
    return _nums([value])[0]


def _nums(values: Sequence[datetime]) -> list[float]:
    """Times as matplotlib's date numbers: its epoch's number once, then plain
    arithmetic (``date2num`` per point was most of a render's time for a day of quotes)."""
    from matplotlib import dates as mdates

    zero = float(mdates.date2num(_EPOCH))  # type: ignore[no-untyped-call]
    return [zero + _utc(v).timestamp() / 86400 for v in values]


@cache
def available() -> bool:
    """Whether the ``charts`` extra (matplotlib and its Korean font) is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("matplotlib", _FONT_PACKAGE))


def hangul_font() -> Path:
    """The path of the NanumGothic font file (raises LookupError when not installed)."""
    spec = importlib.util.find_spec(_FONT_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / _FONT_FILE
        if path.is_file():
            return path
    raise LookupError(f"no Hangul font: install {_FONT_PACKAGE.replace('_', '-')}")


def relative_move(chart: Chart) -> tuple[float | None, float | None]:
    """The ticker's change over the window in %, and its difference to the index's
    change in percentage points (None where a series has fewer than two points);
    ``chart.move`` when given."""
    if chart.move is not None:
        return chart.move

    def change(series: ChartSeries | None) -> float | None:
        if series is None or len(series.points) < 2 or series.points[0][1] == 0:
            return None
        return (series.points[-1][1] / series.points[0][1] - 1) * 100

    own, index = change(chart.series), change(chart.index)
    return own, (own - index if own is not None and index is not None else None)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _LABEL_MAX else text[: _LABEL_MAX - 1] + "…"


def _span(chart: Chart) -> tuple[datetime, datetime] | None:
    # The lines set the window; events only when there is no line. An event outside
    # the window (the news of the day before) is named at its edge instead.
    times = [_utc(t) for t, _ in chart.series.points]
    if chart.index is not None:
        times += [_utc(t) for t, _ in chart.index.points]
    if not times:
        times = [_utc(e.at) for e in chart.events]
    if not times:
        return None
    start, end = min(times), max(times)
    if start == end:
        # One moment only: a quarter hour (intraday) or a day either side.
        pad = (900 if chart.intraday else 86400) / 2
        start, end = start - timedelta(seconds=pad), end + timedelta(seconds=pad)
    margin = (end - start) * 0.03
    return start - margin, end + margin


def render(chart: Chart) -> Rendered:
    """``chart`` drawn as a PNG. Pure and thread-safe: nothing global is read or set."""
    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

    font = FontProperties(fname=str(hangul_font()))
    dpi = 100
    figure = Figure(figsize=(chart.width / dpi, chart.height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_axes((0.11, 0.14, 0.78, 0.72))
    span = _span(chart)
    notes = list(chart.missing)

    series = chart.series
    base = series.points[0][1] if series.points else None
    if series.points:
        axes.plot(
            _nums([t for t, _ in series.points]),
            [v for _, v in series.points],
            color=_PRICE_COLOUR,
            linewidth=1.8,
            label=f"{series.name} ({series.ticker})",
        )
    index = chart.index
    if index is not None and index.points:
        first = index.points[0][1]
        # Rebased to the ticker's first price; without one, as % of its own start.
        scale = (base if base is not None else 100.0) / first if first else 1.0
        axes.plot(
            _nums([t for t, _ in index.points]),
            [v * scale for _, v in index.points],
            color=_INDEX_COLOUR,
            linewidth=1.4,
            linestyle="--",
            label=f"{index.name} (rebased)",
        )

    ordered = sorted(chart.events, key=lambda e: _utc(e.at))
    inside = [e for e in ordered if span is None or span[0] <= _utc(e.at) <= span[1]]
    drawn = inside[:_EVENTS_MAX]
    if len(inside) > len(drawn):
        notes.append(f"외 {len(inside) - len(drawn)}건")
    earlier = [e for e in ordered if span is not None and _utc(e.at) < span[0]]
    if earlier:
        last = earlier[-1]
        more = f" 외 {len(earlier) - 1}건" if len(earlier) > 1 else ""
        when = _utc(last.at).astimezone(KST)
        notes.append(f"이전 소식: {when:%m-%d %H:%M} {_short(last.label)}{more}")
    marker = "#{:02x}{:02x}{:02x}".format(*EVENT_COLOUR)
    for number, event in enumerate(drawn):
        at = _utc(event.at)
        axes.axvline(_num(at), color=marker, linewidth=2, antialiased=False, zorder=3)
        right_half = span is not None and (at - span[0]) * 2 > span[1] - span[0]
        axes.annotate(
            f"{at.astimezone(KST):%H:%M} {_short(event.label)}",
            xy=(_num(at), 1.0),
            xycoords=("data", "axes fraction"),
            # Right of the marker in the left half of the window, left of it after.
            xytext=(-3 if right_half else 3, -12 - 13 * (number % 4)),
            textcoords="offset points",
            ha="right" if right_half else "left",
            fontproperties=font,
            fontsize=8,
            color="#7a1515",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        )

    own, versus = relative_move(chart)
    if own is not None:
        move = f"{own:+.2f}%"
        if versus is not None and index is not None:
            move += f"  ·  {index.name} 대비 {versus:+.2f}%p"
        figure.text(
            0.89,
            0.90,
            move,
            ha="right",
            fontproperties=font,
            fontsize=11,
            fontweight="bold",
            color=_PRICE_COLOUR,
        )
    if not series.points and not (index is not None and index.points):
        axes.text(
            0.5,
            0.5,
            "자료 없음",
            transform=axes.transAxes,
            ha="center",
            fontproperties=font,
            fontsize=14,
            color="#666666",
        )
    if notes:
        figure.text(0.11, 0.02, " · ".join(notes), fontproperties=font, fontsize=8, color="#a05000")

    if span is not None:
        axes.set_xlim(_num(span[0]), _num(span[1]))
    else:
        span = (_EMPTY_SPAN, _EMPTY_SPAN)
    locator = mdates.AutoDateLocator(tz=KST, minticks=3, maxticks=8)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(
        mdates.DateFormatter(  # type: ignore[no-untyped-call]
            "%m-%d %H:%M" if chart.intraday else "%Y-%m-%d", tz=KST
        )
    )
    for label in axes.get_xticklabels() + axes.get_yticklabels():
        label.set_fontsize(8)
    axes.yaxis.set_major_formatter(_thousands())
    axes.set_xlabel(
        "시각 (KST)" if chart.intraday else "날짜 (KST)", fontproperties=font, fontsize=9
    )
    axes.set_ylabel("가격", fontproperties=font, fontsize=9)
    axes.grid(True, color="#e6e6e6", linewidth=0.6)
    if base is not None:
        start: float = base

        def to_pct(value: Any) -> Any:
            return (value / start - 1) * 100

        def from_pct(value: Any) -> Any:
            return start * (1 + value / 100)

        pct = axes.secondary_yaxis("right", functions=(to_pct, from_pct))
        pct.set_ylabel("%", fontsize=9)
        for label in pct.get_yticklabels():
            label.set_fontsize(8)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", prop=_sized(font, 8), framealpha=0.85)
    figure.suptitle(chart.title, fontproperties=_sized(font, 13), x=0.11, ha="left", y=0.97)

    canvas.draw()  # type: ignore[no-untyped-call]
    left, bottom, right, top = axes.get_window_extent().extents
    buffer = io.BytesIO()
    # zlib level 3 instead of 6: a third faster to write here, a few KB more.
    canvas.print_png(buffer, pil_kwargs=_PNG_OPTIONS)  # type: ignore[no-untyped-call]
    height = figure.bbox.height
    return Rendered(
        png=buffer.getvalue(),
        plot_box=(float(left), float(height - top), float(right), float(height - bottom)),
        span=span,
    )


def _sized(font: FontProperties, size: float) -> FontProperties:
    sized = font.copy()
    sized.set_size(size)
    return sized


def _thousands() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}")


async def render_async(chart: Chart, *, within: float = RENDER_TIMEOUT) -> Rendered:
    """:func:`render` in a worker thread, off the event loop; raises TimeoutError
    past ``within`` seconds (the thread finishes on its own and its result is
    dropped: a drawing cannot be interrupted)."""
    return await asyncio.wait_for(asyncio.to_thread(render, chart), within)


def font_properties() -> FontProperties:
    """The Hangul font as matplotlib properties (for callers drawing text alone)."""
    from matplotlib.font_manager import FontProperties

    return FontProperties(fname=str(hangul_font()))
