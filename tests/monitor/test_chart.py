"""The chart renderer: a PNG of the expected size, the event marker where its time
falls, Korean text drawn with real glyphs, and a missing series said rather than fatal."""

from __future__ import annotations

import io
import warnings
from datetime import datetime, timedelta

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from PIL import Image, ImageChops

from monitor.chart import (
    EVENT_COLOUR,
    Chart,
    ChartEvent,
    ChartSeries,
    hangul_font,
    relative_move,
    render,
    render_async,
)
from monitor.timefmt import KST

OPEN = datetime(2025, 6, 18, 9, 0, tzinfo=KST)


def line(ticker: str, start: float, end: float, steps: int = 40) -> ChartSeries:
    points = tuple(
        (OPEN + timedelta(minutes=10 * i), start + (end - start) * i / steps)
        for i in range(steps + 1)
    )
    return ChartSeries(ticker, ticker, points)


def chart(**changes: object) -> Chart:
    base: dict[str, object] = {
        "title": "NAVER (035420) · 2025-06-18 · 정책 뉴스 뒤 급등",
        "series": line("035420", 220_000, 253_550),
        "index": line("KOSPI", 2_950.30, 2_970.85),
        "events": (ChartEvent(OPEN + timedelta(minutes=95), "하정우 AI 수석 임명"),),
    }
    base.update(changes)
    return Chart(**base)  # type: ignore[arg-type]


def decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image.convert("RGB")


@pytest.mark.parametrize(("width", "height"), [(800, 420), (480, 260)])
def test_the_png_decodes_with_the_size_asked(width: int, height: int) -> None:
    image = Image.open(io.BytesIO(render(chart(width=width, height=height)).png))
    assert image.format == "PNG"
    assert image.size == (width, height)


def marker_columns(rendered_png: bytes, box: tuple[float, float, float, float]) -> list[int]:
    """Columns of the plot area at least half of whose pixels are the marker colour."""
    image = decode(rendered_png)
    left, top, right, bottom = (round(v) for v in box)
    columns = []
    for x in range(left, right):
        hits = sum(image.getpixel((x, y)) == EVENT_COLOUR for y in range(top, bottom))
        if hits >= (bottom - top) / 2:
            columns.append(x)
    return columns


@pytest.mark.parametrize("minutes", [35, 95, 250, 380])
def test_the_event_marker_stands_where_its_time_falls(minutes: int) -> None:
    at = OPEN + timedelta(minutes=minutes)
    rendered = render(chart(events=(ChartEvent(at, "공시"),)))
    left, _, right, _ = rendered.plot_box
    start, end = rendered.span
    expected = left + (right - left) * (at - start) / (end - start)
    columns = marker_columns(rendered.png, rendered.plot_box)
    assert columns, "no marker drawn"
    assert min(columns) - 1.5 <= expected <= max(columns) + 1.5


def test_no_event_no_marker() -> None:
    rendered = render(chart(events=()))
    assert marker_columns(rendered.png, rendered.plot_box) == []


def text_alone(text: str, font: FontProperties) -> Image.Image:
    figure = Figure(figsize=(1.2, 0.6), dpi=100)
    canvas = FigureCanvasAgg(figure)
    figure.text(0.1, 0.2, text, fontproperties=font, fontsize=24)
    canvas.draw()  # type: ignore[no-untyped-call]
    buffer = io.BytesIO()
    canvas.print_png(buffer)  # type: ignore[no-untyped-call]
    return decode(buffer.getvalue())


@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")
def test_hangul_is_drawn_with_glyphs_not_missing_boxes() -> None:
    # A font without Hangul draws every syllable as the same missing-glyph box; the
    # chart's font draws different syllables differently, and unlike that box.
    nanum = FontProperties(fname=str(hangul_font()))
    plain = FontProperties(family="DejaVu Sans")
    ga, na = text_alone("가", nanum), text_alone("나", nanum)
    box_ga, box_na = text_alone("가", plain), text_alone("나", plain)
    assert ImageChops.difference(box_ga, box_na).getbbox() is None, "reference is not a box"
    assert ImageChops.difference(ga, na).getbbox() is not None
    assert ImageChops.difference(ga, box_ga).getbbox() is not None


def test_the_chart_draws_no_missing_glyph() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns for each glyph it lacks
        render(chart(missing=("코스피: 시세 없음",)))


def test_the_move_is_the_change_and_the_gap_to_the_index() -> None:
    own, versus = relative_move(chart())
    assert own == pytest.approx(15.25, abs=0.01)
    assert versus == pytest.approx(15.25 - 0.70, abs=0.01)


def test_a_missing_index_draws_the_ticker_and_says_so() -> None:
    rendered = render(chart(index=None, missing=("코스피: 시세 없음",)))
    assert decode(rendered.png).size == (800, 420)
    assert relative_move(chart(index=None))[1] is None


def test_nothing_to_draw_is_still_a_chart() -> None:
    empty = chart(series=ChartSeries("035420", "NAVER", ()), index=None, events=())
    assert decode(render(empty).png).size == (800, 420)


async def test_rendering_off_the_loop_gives_the_same_image() -> None:
    assert (await render_async(chart())).png == render(chart()).png


async def test_a_render_past_its_bound_is_a_timeout() -> None:
    big = chart(series=line("035420", 1, 2, steps=20_000))
    with pytest.raises(TimeoutError):
        await render_async(big, within=0.001)
