"""The June 2025 episode's figures and daily bars, one place for every test that replays it.

Where each figure comes from:

- KOSPI closes: 06-16 2,946.66 and 06-17 2,950.30 (+3.64, +0.12 %, Korea JoongAng Daily
  2025-06-17); 06-18 2,972.19 (+21.89, +0.74 %, Korea JoongAng Daily 2025-06-18);
  06-20 3,021.84 (+44.10, +1.48 %, Korea JoongAng Daily and Donga Ilbo 2025-06-20), so
  06-19 closed at 2,977.74 (+5.55, +0.19 %). 06-18 10:30 2,970.85 (+0.70 %, the
  corpus), which is +20.55 on 06-17's close. Earlier anchors of the synthetic year:
  2025-04-09 2,293.70 (Korea JoongAng Daily), 2025-06-09 2,855.77 (KBS).
- Naver and Kakao, from the corpus: 06-18 10:30 Naver 253,550 (+15.25 % on 06-17's
  220,000) and Kakao 55,100 (+6.37 % on 51,800); 06-18 closes 243,500 and 55,200;
  06-19 closes 252,000 (+3.49 %, day high 259,000, a 52-week high) and 60,400 (+9.42 %,
  day high 61,800).

The daily bars are **synthetic** except those closes (and the 06-18 and 06-19 day
ranges of Naver and Kakao, from the same quotes): a deterministic walk through the
anchors below, a year long so that a 52-week high has the bars it needs (see
``min_bars`` in docs/rules.md). Naver's and Kakao's 06-16 bars, the KOSPI's opens, highs
and lows, and all volumes are made up. Kakao's synthetic year peaks at 57,900 (July 2024), so
that its 06-18 high of 56,000 is no 52-week high and 06-19's 61,800 is.

``python -m tests.episode`` rewrites tests/fixtures/episode/*_chart_*.{xml,json} from
this module; tests/test_episode_fixtures.py checks they are current.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from itertools import pairwise
from pathlib import Path

from adapters.records import DailyBar, Quote
from monitor import market
from monitor.timefmt import KST

NAVER, KAKAO, KOSPI = "035420", "035720", "KOSPI"
FIRST_DAY = date(2024, 6, 3)
LAST_DAY = date(2025, 6, 19)
FIXTURES = Path(__file__).parent / "fixtures" / "episode"

# 06-19's KOSPI change: +5.55 points on 06-18's 2,972.19.
KOSPI_0619_CHANGE_PCT = 0.19
KOSPI_0618_INTRADAY_PCT = 0.70


@dataclass(frozen=True)
class Bar:
    day: date
    open: float
    high: float
    low: float
    close: float
    volume: int


# The episode's own bars (open, high, low, close, volume): the closes of 06-17 to 06-19
# (and the KOSPI's of 06-16) are the real ones above.
EPISODE_BARS: dict[str, dict[date, tuple[float, float, float, float, int]]] = {
    NAVER: {
        date(2025, 6, 16): (214_000, 219_500, 212_500, 217_500, 1_450_000),
        date(2025, 6, 17): (218_000, 222_500, 216_000, 220_000, 1_380_000),
        date(2025, 6, 18): (224_000, 258_000, 223_500, 243_500, 9_834_217),
        date(2025, 6, 19): (244_000, 259_000, 241_000, 252_000, 3_912_345),
    },
    KAKAO: {
        date(2025, 6, 16): (51_000, 51_900, 50_700, 51_400, 1_817_000),
        date(2025, 6, 17): (51_400, 52_100, 51_100, 51_800, 1_818_000),
        date(2025, 6, 18): (52_300, 56_000, 52_100, 55_200, 11_120_334),
        date(2025, 6, 19): (55_300, 61_800, 55_000, 60_400, 11_234_567),
    },
    KOSPI: {
        date(2025, 6, 16): (2_920.10, 2_950.90, 2_915.50, 2_946.66, 478_901),
        date(2025, 6, 17): (2_957.20, 2_962.40, 2_936.70, 2_950.30, 923_000),
        date(2025, 6, 18): (2_951.40, 2_975.80, 2_945.20, 2_972.19, 568_600),
        date(2025, 6, 19): (2_976.30, 2_993.60, 2_966.20, 2_977.74, 512_345),
    },
}

# Where the synthetic walk passes (day → close), before the episode's own bars.
ANCHORS: dict[str, dict[date, float]] = {
    NAVER: {
        FIRST_DAY: 172_000,
        date(2024, 7, 2): 182_000,
        date(2024, 9, 10): 158_000,
        date(2024, 12, 2): 196_000,
        date(2025, 3, 4): 228_000,
        date(2025, 4, 9): 186_000,
        date(2025, 6, 13): 213_000,
    },
    KAKAO: {
        FIRST_DAY: 50_200,
        date(2024, 7, 1): 57_300,
        date(2024, 8, 5): 40_500,
        date(2024, 11, 14): 35_200,
        date(2025, 2, 4): 40_800,
        date(2025, 4, 9): 37_100,
        date(2025, 6, 13): 50_600,
    },
    KOSPI: {
        FIRST_DAY: 2_682.0,
        date(2024, 7, 11): 2_891.0,
        date(2024, 8, 5): 2_441.5,
        date(2024, 12, 9): 2_360.6,
        date(2025, 4, 9): 2_293.70,
        date(2025, 6, 9): 2_855.77,
        date(2025, 6, 13): 2_894.62,
    },
}
# Kakao's synthetic peak (2024-07-01); no other synthetic high reaches it.
KAKAO_PEAK = (date(2024, 7, 1), 57_900.0)
BASE_VOLUME = {NAVER: 900_000, KAKAO: 1_800_000, KOSPI: 480_000}
TICK = {NAVER: 500.0, KAKAO: 50.0, KOSPI: 0.01}


def trading_days(start: date = FIRST_DAY, end: date = LAST_DAY) -> list[date]:
    return market.trading_days_between(start, end)


def _round(value: float, tick: float) -> float:
    return round(round(value / tick) * tick, 2)


def bars(ticker: str) -> list[Bar]:
    """The ticker's daily bars from FIRST_DAY to LAST_DAY, oldest first (deterministic)."""
    rng = random.Random(f"kmon-episode-{ticker}")
    anchors = sorted(ANCHORS[ticker].items())
    own = EPISODE_BARS[ticker]
    tick = TICK[ticker]
    out: list[Bar] = []
    previous: float | None = None
    for day in trading_days():
        if day in own:
            o, h, lo, c, v = own[day]
            out.append(Bar(day, o, h, lo, c, v))
            previous = c
            continue
        if ticker == KAKAO and day == KAKAO_PEAK[0]:
            close = ANCHORS[KAKAO][day]
            out.append(Bar(day, 55_500, KAKAO_PEAK[1], 55_100, close, 6_100_000))
            previous = close
            continue
        # Linear between the anchors around the day, with a small deterministic wiggle.
        after = next((i for i, (d, _) in enumerate(anchors) if d >= day), None)
        if after is None:
            # Between the last anchor and the episode's first bar.
            start_day, start_close = anchors[-1]
            end_day = min(own)
            end_close = own[end_day][3]
        elif anchors[after][0] == day or after == 0:
            start_day, start_close = anchors[after]
            end_day, end_close = start_day, start_close
        else:
            (start_day, start_close), (end_day, end_close) = anchors[after - 1], anchors[after]
        span = (end_day - start_day).days or 1
        level = start_close + (end_close - start_close) * (day - start_day).days / span
        wiggle = rng.uniform(-0.012, 0.012)
        close = _round(level if day in ANCHORS[ticker] else level * (1 + wiggle), tick)
        opened = _round((previous or close) * (1 + rng.uniform(-0.006, 0.006)), tick)
        high = _round(max(opened, close) * (1 + rng.uniform(0.001, 0.012)), tick)
        low = _round(min(opened, close) * (1 - rng.uniform(0.001, 0.012)), tick)
        if ticker == KAKAO:
            high = min(high, KAKAO_PEAK[1] - 300)
        volume = round(BASE_VOLUME[ticker] * rng.uniform(0.7, 1.3))
        out.append(Bar(day, opened, high, low, close, volume))
        previous = close
    return out


def daily_bars(ticker: str, *, source: str = "naver") -> list[DailyBar]:
    """:func:`bars` as the adapters' records, as a chart source gives them."""
    return [
        DailyBar(ticker, b.day, b.open, b.high, b.low, b.close, b.volume, source)
        for b in bars(ticker)
    ]


def _num(value: float, ticker: str) -> str:
    return f"{value:.2f}" if ticker == KOSPI else f"{value:.0f}"


NAMES = {NAVER: "NAVER", KAKAO: "카카오", KOSPI: "코스피"}


def naver_chart(ticker: str, *, through: date = LAST_DAY, count: int | None = None) -> bytes:
    """fchart.stock.naver.com's answer (EUC-KR XML) for the bars up to ``through``, the
    last ``count`` of them when given, as Naver answers ``count=``."""
    shown = [b for b in bars(ticker) if b.day <= through]
    if count is not None:
        shown = shown[-count:]
    precision = 2 if ticker == KOSPI else 0
    items = "\n".join(
        f'\t\t\t\t<item data="{b.day:%Y%m%d}|{_num(b.open, ticker)}|{_num(b.high, ticker)}'
        f'|{_num(b.low, ticker)}|{_num(b.close, ticker)}|{b.volume}" />'
        for b in shown
    )
    text = (
        '<?xml version="1.0" encoding="EUC-KR" ?>\n'
        "<!-- Synthetic daily bars (tests/episode.py): only the closes of 2025-06-17 to"
        " 06-19 and the KOSPI's dated there are real. -->\n"
        "<protocol>\n"
        f'\t\t\t<chartdata symbol="{ticker}" name="{NAMES[ticker]}" count="{len(shown)}"'
        f' timeframe="day" precision="{precision}" origintime="19990101">\n'
        f"{items}\n"
        "\t\t\t</chartdata>\n"
        "</protocol>\n"
    )
    return text.encode("euc-kr")


YAHOO_SYMBOL = {NAVER: "035420.KS", KAKAO: "035720.KS", KOSPI: "^KS11"}


def yahoo_chart(ticker: str, *, through: date = LAST_DAY) -> bytes:
    """query1.finance.yahoo.com/v8/finance/chart's answer for the bars up to ``through``
    (the shape of the real answers in /work/shared/fixtures/yahoo; each bar stamped at
    the session's open, 09:00 KST; the index volume is 0, as Yahoo gives it)."""
    shown = [b for b in bars(ticker) if b.day <= through]
    stamps = [int(datetime.combine(b.day, time(9), KST).timestamp()) for b in shown]
    last = shown[-1]
    close_at = int(datetime.combine(last.day, time(15, 30), KST).astimezone(UTC).timestamp())
    volumes = [0 if ticker == KOSPI else b.volume for b in shown]
    answer = {
        "chart": {
            "result": [
                {
                    "meta": {
                        "currency": "KRW",
                        "symbol": YAHOO_SYMBOL[ticker],
                        "exchangeName": "KSC",
                        "instrumentType": "INDEX" if ticker == KOSPI else "EQUITY",
                        "regularMarketTime": close_at,
                        "gmtoffset": 32400,
                        "timezone": "KST",
                        "exchangeTimezoneName": "Asia/Seoul",
                        "regularMarketPrice": last.close,
                        "chartPreviousClose": shown[0].open,
                        "priceHint": 2,
                        "dataGranularity": "1d",
                        "range": "",
                    },
                    "timestamp": stamps,
                    "indicators": {
                        "quote": [
                            {
                                "open": [b.open for b in shown],
                                "high": [b.high for b in shown],
                                "low": [b.low for b in shown],
                                "close": [b.close for b in shown],
                                "volume": volumes,
                            }
                        ],
                        "adjclose": [{"adjclose": [b.close for b in shown]}],
                    },
                }
            ],
            "error": None,
        }
    }
    return json.dumps(answer, separators=(",", ":")).encode()


def closed_through(now: datetime) -> date:
    """The last session closed at ``now``: a chart source serves no bar of a session
    still trading (its figures are not the day's)."""
    return market.last_closed_session(now).day


def fixture_files() -> dict[Path, bytes]:
    """The committed chart fixtures, as this module makes them."""
    files = {FIXTURES / f"naver_fchart_{t}.xml": naver_chart(t) for t in (NAVER, KAKAO, KOSPI)}
    files[FIXTURES / "yahoo_chart_KS11.json"] = yahoo_chart(KOSPI)
    return files


if __name__ == "__main__":
    for path, body in fixture_files().items():
        path.write_bytes(body)
        print(f"wrote {path}")


# 06-18 intraday, for charts: (KST time, Naver, KOSPI). The 10:30 figures and the closes
# are the real ones above; the rest of the path (the open, the morning high, the
# afternoon) is **synthetic**, drawn through the day's bar.
INTRADAY_0618: tuple[tuple[time, float, float], ...] = (
    (time(9, 0), 224_000, 2_951.40),
    (time(9, 20), 229_500, 2_948.10),
    (time(9, 40), 241_000, 2_955.60),
    (time(10, 0), 249_000, 2_962.80),
    (time(10, 30), 253_550, 2_970.85),
    (time(11, 0), 258_000, 2_975.80),
    (time(12, 0), 251_500, 2_969.40),
    (time(13, 0), 247_000, 2_966.90),
    (time(14, 0), 245_500, 2_970.20),
    (time(15, 0), 244_000, 2_971.60),
    (time(15, 30), 243_500, 2_972.19),
)


def intraday_quotes(source: str = "chart-test") -> list[Quote]:
    """Naver's and the KOSPI's 06-18 session as quotes every ten minutes, through
    :data:`INTRADAY_0618` (linear between its points)."""
    day = date(2025, 6, 18)
    prev = {NAVER: 220_000.0, KOSPI: 2_950.30}
    quotes: list[Quote] = []
    for (t0, n0, k0), (t1, n1, k1) in pairwise(INTRADAY_0618):
        start = datetime.combine(day, t0, KST)
        end = datetime.combine(day, t1, KST)
        steps = max(1, int((end - start).total_seconds() // 600))
        for step in range(steps + (1 if t1 == INTRADAY_0618[-1][0] else 0)):
            share = step / steps
            at = start + (end - start) * share
            for ticker, low, high in ((NAVER, n0, n1), (KOSPI, k0, k1)):
                price = _round(low + (high - low) * share, TICK[ticker])
                quotes.append(
                    Quote(
                        ticker=ticker,
                        as_of=at.astimezone(UTC),
                        price=price,
                        source=source,
                        prev_close=prev[ticker],
                        change=price - prev[ticker],
                        change_pct=round((price / prev[ticker] - 1) * 100, 2),
                        market_open=True,
                    )
                )
    return quotes
