"""The committed chart fixtures of the June 2025 episode are what tests/episode.py makes."""

from __future__ import annotations

from datetime import date, timedelta

from adapters.naver import parse_fchart
from tests import episode


def test_the_committed_fixtures_are_current() -> None:
    for path, body in episode.fixture_files().items():
        assert path.read_bytes() == body, f"{path.name}: run python -m tests.episode"


def test_the_bars_keep_the_episode_figures() -> None:
    closes = {
        t: {b.day: b.close for b in parse_fchart(episode.naver_chart(t))}
        for t in (episode.NAVER, episode.KAKAO, episode.KOSPI)
    }
    june = [date(2025, 6, d) for d in (17, 18, 19)]
    assert [closes[episode.NAVER][d] for d in june] == [220_000, 243_500, 252_000]
    assert [closes[episode.KAKAO][d] for d in june] == [51_800, 55_200, 60_400]
    assert [closes[episode.KOSPI][d] for d in june] == [2950.30, 2972.19, 2977.74]
    # The KOSPI's 06-19: +5.55 points, +0.19 %.
    up = closes[episode.KOSPI][june[2]] - closes[episode.KOSPI][june[1]]
    assert round(up, 2) == 5.55 and round(up / 2972.19 * 100, 2) == episode.KOSPI_0619_CHANGE_PCT
    # A year of sessions before 06-18, and Kakao's synthetic peak below 06-19's 61,800 but
    # above 06-18's 56,000.
    year = [
        b for b in episode.bars(episode.KAKAO) if june[1] - timedelta(days=365) <= b.day < june[1]
    ]
    assert len(year) >= 200
    assert 56_000 < max(b.high for b in year) < 61_800


def test_a_chart_source_serves_no_bar_of_a_session_still_trading() -> None:
    from datetime import datetime

    from monitor.timefmt import KST

    assert episode.closed_through(datetime(2025, 6, 18, 10, 31, tzinfo=KST)) == date(2025, 6, 17)
    assert episode.closed_through(datetime(2025, 6, 18, 15, 30, tzinfo=KST)) == date(2025, 6, 18)
    assert episode.closed_through(datetime(2025, 6, 21, 9, 0, tzinfo=KST)) == date(2025, 6, 20)
