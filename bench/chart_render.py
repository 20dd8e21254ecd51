"""Chart rendering: time per PNG and whether memory grows over many renders.

Run: .venv/bin/python bench/chart_render.py [--renders 1000]  (prints figures; not a test)

The chart of an alert (:func:`monitor.chart.render`, 800×420) for a session of quotes
every ten seconds (2,340 points for the ticker and as many for the KOSPI, more than a
day of polling stores) with three events, and the small digest chart (480×260) of 20
daily closes. Each is drawn once to warm up (fonts loaded, matplotlib imported), then
``--renders`` times; the time of each render is taken and p50/p99 printed. The
process's resident memory (``/proc/self/statm``) is read after the warm-up and every
100 renders: a leak shows as steady growth, a cache as a step at the start.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.chart import Chart, ChartEvent, ChartSeries, render
from monitor.timefmt import KST

OPEN = datetime(2025, 6, 18, 9, 0, tzinfo=KST)


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def session_chart() -> Chart:
    steps = 2340  # 6.5 hours of 10-second quotes

    def line(ticker: str, start: float, gain: float) -> ChartSeries:
        points = tuple(
            (
                OPEN + timedelta(seconds=10 * i),
                start * (1 + gain * min(1.0, i / 600) + 0.002 * math.sin(i / 40)),
            )
            for i in range(steps + 1)
        )
        return ChartSeries(ticker, ticker, points)

    return Chart(
        title="NAVER (035420) · 2025-06-18 · policy-move",
        series=line("035420", 220_000, 0.1525),
        index=line("KOSPI", 2_950.30, 0.007),
        events=tuple(
            ChartEvent(OPEN + timedelta(minutes=m), f"대통령실 AI 수석 임명 소식 {m}")
            for m in (42, 95, 250)
        ),
        move=(15.25, 14.55),
    )


def digest_chart() -> Chart:
    days = [
        OPEN - timedelta(days=d)
        for d in range(28, -1, -1)
        if (OPEN - timedelta(days=d)).weekday() < 5
    ]
    return Chart(
        title="NAVER (035420)",
        series=ChartSeries(
            "035420", "NAVER", tuple((d, 210_000 + 1_000 * i) for i, d in enumerate(days))
        ),
        index=ChartSeries("KOSPI", "코스피", tuple((d, 2_900 + 3 * i) for i, d in enumerate(days))),
        events=(ChartEvent(days[-3], "정책 뉴스"),),
        intraday=False,
        width=480,
        height=260,
    )


def measure(name: str, chart: Chart, renders: int) -> None:
    render(chart)  # warm-up: imports, the font file, matplotlib's caches
    gc.collect()
    start_rss = rss_mb()
    times: list[float] = []
    marks: list[float] = []
    size = 0
    for i in range(1, renders + 1):
        began = time.perf_counter()
        size = len(render(chart).png)
        times.append((time.perf_counter() - began) * 1000)
        if i % 100 == 0:
            marks.append(rss_mb())
    gc.collect()
    times.sort()
    p99 = times[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)]
    print(
        f"{name}: {renders} renders, PNG {size / 1024:.0f} KB;"
        f" p50 {statistics.median(times):.0f} ms, p99 {p99:.0f} ms, max {times[-1]:.0f} ms;"
        f" RSS {start_rss:.1f} MB after warm-up, {rss_mb():.1f} MB after"
        f" (+{rss_mb() - start_rss:.1f}); every 100: {', '.join(f'{m:.0f}' for m in marks)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=1000)
    args = parser.parse_args()
    measure("alert chart, 2×2,341 quotes", session_chart(), args.renders)
    measure("digest chart, 20 closes", digest_chart(), args.renders)


if __name__ == "__main__":
    main()
