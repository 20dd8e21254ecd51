"""The June 2025 episode replayed through the ``kmon`` command alone, on the real clock.

From an empty database: ``kmon db upgrade``; ``kmon poll`` of the episode's two feeds
(tests/fixtures/episode); ``kmon quotes backfill`` of a year of daily bars from
loopback chart sources (Naver's fchart for the stocks; for the KOSPI Naver answers
404 and Yahoo's chart serves, tests/episode.py); ``kmon rules replay``. Each command is
its own process and today is whatever day the test runs: nothing may refuse the past.

The bars stand in for the sessions' closing quotes, so the replay says what the
closes say: a ``policy_move`` for NAVER on 06-18 (+10.68 % at the close, 9.94 points
beyond the KOSPI's +0.74 %) and 06-19 (+3.49 %, 3.30 beyond +0.19 %), one for Kakao on
06-19 (a 52-week high of 61,800 after sector news), the two news stories, one signal
each, and nothing for the KOSPI or Kakao's 06-18. Naver's plain +15.25 % of 06-18 was
intraday: at the close it is under the big-move rule's 10 points beyond the KOSPI, so
the bars do not give it (tests/monitor/ingest/test_replay.py, on intraday quotes, does).
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pytest
from aiohttp import web

from tests.cli_process import kmon
from tests.episode import KAKAO, KOSPI, NAVER, naver_chart, trading_days, yahoo_chart
from tests.servers import FakeSource

pytestmark = pytest.mark.e2e

EPISODE = Path(__file__).parent / "fixtures" / "episode"
SINCE, UNTIL = "2024-06-01", "2025-06-20"
JUNE = date(2025, 6, 1)


def serve(server: FakeSource) -> None:
    server.serve("/wire.xml", (EPISODE / "wire_ko.xml").read_bytes())
    server.serve("/portal.xml", (EPISODE / "portal_ko.xml").read_bytes())

    async def fchart(request: web.Request) -> web.Response:
        symbol = request.query["symbol"]
        if symbol == KOSPI:
            return web.Response(status=404, text="no such chart")
        return web.Response(body=naver_chart(symbol, count=int(request.query["count"])))

    server.route("/sise.nhn", fchart)
    # Yahoo knows the KOSPI here; any other symbol is its 404.
    server.serve("/yahoo/^KS11", yahoo_chart(KOSPI), headers={"Content-Type": "application/json"})


# Which news rule leads a story's signal is the default rules' business: the episode
# pins the stories (one signal each) and the moves.
STORY = "(a news rule)"


def signal_kinds(rows: list[dict[str, object]]) -> set[tuple[str, str, str, str]]:
    return {
        (
            str(r["kind"]),
            STORY if r["kind"] == "news" else str(r["rule"]),
            str(r["subject"]),
            str(r["event_time"])[:10],
        )
        for r in rows
    }


async def test_the_episode_through_the_cli(
    db_url: str, http_server: FakeSource, tmp_path: Path
) -> None:
    serve(http_server)
    config = tmp_path / "kmon.yaml"
    config.write_text(
        f"database:\n  url: {db_url}\n"
        "sources:\n"
        f"  - {{name: wire, url: '{http_server.url('/wire.xml')}', interval: 60}}\n"
        f"  - {{name: portal, url: '{http_server.url('/portal.xml')}', interval: 60}}\n"
        "quotes:\n"
        "  providers: [naver]\n"
        f"  naver_polling_url: {http_server.url('/realtime')}\n"
        f"  naver_chart_url: {http_server.url('/sise.nhn')}\n"
        f"  yahoo_chart_url: {http_server.url('/yahoo')}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "KMON_CONFIG": str(config), "KMON_LOG_FORMAT": "json"}

    code, _, err = await kmon("db", "upgrade", env=env)
    assert code == 0, err

    # Usage errors: one line, exit 2, nothing asked of any source.
    for args, says in [
        ((), "Missing option '--since'"),
        (("--since", "2025-06-20", "--until", "2025-06-01"), "is not after --since"),
        (("--since", SINCE, "--ticker", "005930"), "not a followed ticker: 005930"),
        (("--since", "yesterday-ish"), "--since"),
        (("--since", "2999-01-04"), "is after the last closed session"),
    ]:
        code, out, err = await kmon("quotes", "backfill", *args, env=env)
        assert (code, out) == (2, ""), (args, err)
        assert len(err.strip().splitlines()) == 1 and says in err, (args, err)
    assert http_server.requests_to("/sise.nhn") == []

    # Naver's chart down: Yahoo serves the KOSPI but knows neither stock. All or
    # nothing: each failure named, the KOSPI's bars not stored either, exit 1.
    down = {**env, "KMON_QUOTES__NAVER_CHART_URL": http_server.url("/down/sise.nhn")}
    code, out, err = await kmon("quotes", "backfill", "--since", SINCE, env=down)
    assert code == 1
    failures = [line for line in err.splitlines() if not line.startswith("{")]
    assert failures[-1] == "kmon: nothing stored: no chart source answered for 2 ticker(s)"
    for ticker in (NAVER, KAKAO):
        (line,) = [f for f in failures if f.startswith(f"{ticker}: no bars: ")]
        assert "naver chart: " in line and "yahoo chart: " in line and "404" in line
    assert out.startswith(f"{KOSPI}: ") and "(from yahoo; naver chart: " in out
    for ticker in (NAVER, KOSPI):
        code, out, _ = await kmon("quotes", "bars", "--ticker", ticker, "--since", SINCE,
                                  "--format", "json", env=env)  # fmt: skip
        assert (code, json.loads(out)) == (0, [])

    # The feeds: the 06-16 story (a wire copy, two portal copies) and the 06-17 note,
    # a year and more before today.
    code, out, err = await kmon("poll", env=env)
    assert code == 0, err
    assert sorted(out.splitlines()) == ["portal: ok (2 new)", "wire: ok (4 new)"]

    # A year of bars, all of them, then again: nothing new.
    days = len(trading_days())
    code, out, err = await kmon("quotes", "backfill", "--since", SINCE, "--until", UNTIL, env=env)
    assert code == 0, err
    lines = out.splitlines()
    assert f"{NAVER}: {days} bars, 2024-06-03 to 2025-06-19 (from naver)" in lines
    (kospi,) = [line for line in lines if line.startswith(f"{KOSPI}: ")]
    assert kospi.startswith(f"{KOSPI}: {days} bars, 2024-06-03 to 2025-06-19 (from yahoo; naver")
    assert lines[-1] == f"stored {3 * days} new bars, corrected 0 (2024-06-01 to 2025-06-19)"
    code, out, err = await kmon("quotes", "backfill", "--since", SINCE, "--until", UNTIL, env=env)
    assert (code, out.splitlines()[-1]) == (
        0,
        "stored 0 new bars, corrected 0 (2024-06-01 to 2025-06-19)",
    ), err

    code, out, _ = await kmon("quotes", "bars", "--ticker", NAVER, "--since", "2025-06-17",
                              "--format", "json", env=env)  # fmt: skip
    assert code == 0
    assert [(b["day"], b["close"], b["source"]) for b in json.loads(out)] == [
        ("2025-06-17", 220_000, "naver"),
        ("2025-06-18", 243_500, "naver"),
        ("2025-06-19", 252_000, "naver"),
    ]
    code, out, _ = await kmon("quotes", "bars", "--ticker", KOSPI, "--since", "2025-06-18",
                              "--until", "2025-06-19", "--format", "csv", env=env)  # fmt: skip
    assert out.splitlines()[0] == "ticker,day,open,high,low,close,volume,source,fetched_at"
    assert [line.split(",")[5] for line in out.splitlines()[1:]] == ["2972.19"]
    code, out, _ = await kmon("quotes", "bars", "--ticker", KAKAO, "--since", "2025-06-19",
                              env=env)  # fmt: skip
    assert "61,800" in out and "60,400" in out

    # The replay: what the closes say, and nothing stored.
    code, before, _ = await kmon("signals", "list", "--format", "json", env=env)
    window = ("--since", "2025-06-01", "--until", "2025-07-01")
    code, out, err = await kmon("rules", "replay", *window, "--format", "json", env=env)
    assert code == 0, err
    report = json.loads(out)
    assert signal_kinds(report["signals"]) == {
        ("news", STORY, "ha-jung-woo", "2025-06-16"),
        ("news", STORY, "naver", "2025-06-17"),
        ("policy_move", "policy-move", NAVER, "2025-06-18"),
        ("policy_move", "policy-move", NAVER, "2025-06-19"),
        ("policy_move", "policy-high", KAKAO, "2025-06-19"),
    }
    assert len(report["signals"]) == 5  # one per story, one per ticker and session
    assert (report["quotes"], report["bar_quotes"]) == (0, 3 * len(trading_days(JUNE)))
    naver = {
        s["event_time"][:10]: s["explanation"] for s in report["signals"] if s["subject"] == NAVER
    }
    lead = naver["2025-06-18"]["rules"][0]["matched"]["change"]
    assert (lead["change_pct"], lead["index_change_pct"]) == (10.68, 0.74)
    lead = naver["2025-06-19"]["rules"][0]["matched"]["change"]
    assert (lead["change_pct"], lead["index_change_pct"]) == (3.49, 0.19)
    assert naver["2025-06-19"]["move"]["source"] == "naver-bar"
    code, after, _ = await kmon("signals", "list", "--format", "json", env=env)
    assert json.loads(after) == json.loads(before)
    # What the poll stored: the two stories, once each, whatever today is.
    assert signal_kinds(json.loads(after)) == {
        ("news", STORY, "ha-jung-woo", "2025-06-16"),
        ("news", STORY, "naver", "2025-06-17"),
    }
    assert len(json.loads(after)) == 2

    code, out, _ = await kmon("rules", "replay", *window, env=env)
    assert code == 0
    assert "and 0 quotes and" in out and "daily bars as closing quotes" in out
    assert "2025-06-19 15:30  policy_move  policy-high [warning]  035720" in out
