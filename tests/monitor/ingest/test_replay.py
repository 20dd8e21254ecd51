"""The June 2025 episode end to end: polled, tagged, stored, then replayed.

The project's own fixtures (tests/fixtures/episode, and the year of daily bars of
tests/episode.py, where each figure's source is given) stand in for two feeds and
Naver's quote and chart endpoints, served on loopback. The daemon's own pipeline polls
them with a clock set to the days of the episode (corpus/README.md):

- 06-16 Ha Jung-woo, Naver's AI head, becomes the president's AI secretary (one wire
  story and two retitled copies on a portal; an actor of the same name in other news);
- 06-17 JPMorgan raises Naver's target price;
- 06-18 10:30 Naver +15.25 %, Kakao +6.37 %, KOSPI +0.70 %;
- 06-19 close: Naver +3.49 % at a 52-week high of 259,000, Kakao +9.42 % at 61,800,
  the KOSPI +0.19 % (2,977.74).

Expected, and nothing else: a ``policy_move`` for NAVER on 06-18 (policy-move, with
policy-high besides) and on 06-19 (policy-move: +3.49 % is 3.30 points beyond the
KOSPI; policy-high besides) and for Kakao on 06-19 (policy-high); Naver's plain
double-digit move on 06-18; the two news stories. The replay over the stored rows must
say the same without storing anything.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from monitor.cli.main import main
from monitor.config import load_settings
from monitor.db import signals as signals_repo
from monitor.db.schema import SignalItem, SignalRow
from monitor.ingest.context import PollContext
from monitor.ingest.quotes import poll_quotes, refresh_bars
from monitor.service.daemon import open_runtime, poll_once
from monitor.timefmt import KST
from tests.episode import closed_through, naver_chart, trading_days
from tests.servers import FakeSource

FIXTURES = Path(__file__).parents[2] / "fixtures"
EPISODE = FIXTURES / "episode"
NAVER, KAKAO = "035420", "035720"
JUNE_17, JUNE_18 = date(2025, 6, 17), date(2025, 6, 18)

EXPECTED = {
    ("news", "ai-appointment", "ha-jung-woo", "2025-06-16"),
    ("news", "ai-platform-market", "naver", "2025-06-17"),
    ("move", "ai-platform-big-move", NAVER, "2025-06-18"),
    ("policy_move", "policy-move", NAVER, "2025-06-18"),
    ("policy_move", "policy-move", NAVER, "2025-06-19"),
    ("policy_move", "policy-high", KAKAO, "2025-06-19"),
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 6, 17, 18, 0, tzinfo=KST)

    def __call__(self) -> datetime:
        return self.now


def serve_episode(server: FakeSource, clock: Clock) -> None:
    server.serve("/wire.xml", (EPISODE / "wire_ko.xml").read_bytes())
    server.serve("/portal.xml", (EPISODE / "portal_ko.xml").read_bytes())

    async def fchart(request: web.Request) -> web.Response:
        # The bars of the sessions closed by the clock, as Naver serves them.
        body = naver_chart(
            request.query["symbol"],
            through=closed_through(clock.now),
            count=int(request.query["count"]),
        )
        return web.Response(body=body)

    server.route("/sise.nhn", fchart)


def write_config(tmp_path: Path, db_url: str, server: FakeSource) -> Path:
    path = tmp_path / "kmon.yaml"
    path.write_text(
        f"database:\n  url: {db_url}\n"
        "sources:\n"
        f"  - {{name: wire, url: '{server.url('/wire.xml')}', interval: 60}}\n"
        f"  - {{name: portal, url: '{server.url('/portal.xml')}', interval: 60}}\n"
        "quotes:\n"
        "  providers: [naver]\n"
        f"  naver_polling_url: {server.url('/realtime')}\n"
        f"  naver_chart_url: {server.url('/sise.nhn')}\n",
        encoding="utf-8",
    )
    return path


def kinds(rows: list[dict[str, object]]) -> set[tuple[str, str, str, str]]:
    return {
        (str(r["kind"]), str(r["rule"]), str(r["subject"]), str(r["event_time"])[:10]) for r in rows
    }


async def kmon(*args: str) -> Result:
    # In a thread: the CLI runs its own event loop.
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), catch_exceptions=False)


@pytest.fixture
async def episode(
    db_url: str, http_server: FakeSource, tmp_path: Path
) -> AsyncIterator[tuple[Path, PollContext]]:
    """The episode polled through the pipeline, day by day; yields the config file."""
    clock = Clock()
    serve_episode(http_server, clock)
    config = write_config(tmp_path, db_url, http_server)
    settings = load_settings(config)
    async with open_runtime(settings, clock=clock) as ctx:
        # 06-17 evening: both feeds (the 06-16 story and its copies, the 06-17 note).
        outcomes = await poll_once(ctx)
        assert {o.status for o in outcomes} == {"ok"}
        # 06-18 10:31: the surge, with a year of bars before it (up to 06-17's close).
        clock.now = datetime(2025, 6, 18, 10, 31, tzinfo=KST)
        assert await refresh_bars(ctx, settings.quotes) == 3 * len(trading_days(end=JUNE_17))
        surge = (EPISODE / "naver_realtime_2025-06-18.json").read_bytes()
        http_server.serve("/realtime", surge)
        assert (await poll_quotes(ctx, settings.quotes)).stored == 3
        # 06-18 16:00, half an hour after the close: the day's bar.
        clock.now = datetime(2025, 6, 18, 16, 0, tzinfo=KST)
        assert await refresh_bars(ctx, settings.quotes) == 3 * len(trading_days(end=JUNE_18))
        # 06-19 15:31: the close.
        clock.now = datetime(2025, 6, 19, 15, 31, tzinfo=KST)
        http_server.serve("/realtime", (EPISODE / "naver_realtime_2025-06-19.json").read_bytes())
        assert (await poll_quotes(ctx, settings.quotes)).stored == 3
        # Polled again: nothing new is stored, nothing is concluded twice.
        assert (await poll_quotes(ctx, settings.quotes)).stored == 0
        assert {o.status for o in await poll_once(ctx, ["wire", "portal"])} == {"ok"}
        yield config, ctx


async def stored_signals(ctx: PollContext) -> list[SignalRow]:
    async with ctx.sessionmaker() as session:
        return list((await session.scalars(select(SignalRow).order_by(SignalRow.id))).all())


async def test_the_live_pipeline_stores_exactly_the_expected_signals(
    episode: tuple[Path, PollContext],
) -> None:
    _, ctx = episode
    rows = await stored_signals(ctx)
    got = {
        (r.kind, r.rule_id, r.subject, r.event_time.astimezone(KST).date().isoformat())
        for r in rows
    }
    assert got == EXPECTED
    assert len(rows) == len(EXPECTED)  # one row per conclusion
    assert not [r for r in rows if "KOSPI" in r.tickers.split()]


async def test_one_story_from_three_outlets_is_one_signal_with_three_items(
    episode: tuple[Path, PollContext],
) -> None:
    _, ctx = episode
    rows = await stored_signals(ctx)
    (story,) = [r for r in rows if r.subject == "ha-jung-woo"]
    async with ctx.sessionmaker() as session:
        found = await signals_repo.get_signal(session, story.id)
        links = await session.scalar(select(func.count()).select_from(SignalItem))
    assert found is not None
    _, items = found
    assert sorted(i.source for i in items) == ["portal", "portal", "wire"]
    assert {i.title for i in items if i.source == "wire"} == {
        "[속보] 대통령실 첫 AI미래기획수석에 하정우 네이버 AI센터장 임명"
    }
    assert links == 4  # the story's three copies and the JPMorgan note
    # The explanation holds the matched terms with their positions in the title.
    title = story.explanation["title"]
    hit = story.explanation["themes"]["ai-appointment"][0]
    assert title[hit["start"] : hit["end"]] == hit["surface"]
    assert story.tickers.split() == [NAVER]


async def test_a_policy_move_names_its_move_news_and_window(
    episode: tuple[Path, PollContext],
) -> None:
    _, ctx = episode
    rows = await stored_signals(ctx)
    (naver,) = [r for r in rows if r.kind == "policy_move" and r.dedup_key.endswith("06-18")]
    exp = naver.explanation
    assert exp["move"]["ticker"] == NAVER and exp["move"]["change_pct"] == pytest.approx(15.25)
    lead = exp["rules"][0]
    assert lead["rule_id"] == "policy-move"
    assert lead["matched"]["change"]["index_change_pct"] == pytest.approx(0.70)
    # The story as its first stored copy tells it (whichever feed was read first).
    (news,) = lead["news"]
    assert "AI미래기획수석에 하정우 네이버 AI센터장 임명" in news["title"]
    assert (news["news_rules"], news["about"]) == (
        ["ai-policy", "ai-policy-platform", "ai-appointment", "ai-post"],
        "entity",
    )
    assert lead["window"]["session"] == "2025-06-18"
    # Kakao's +6.37 % on 06-18 followed news that named Naver, not Kakao.
    assert f"policy_move:{KAKAO}:2025-06-18" not in {r.dedup_key for r in rows}


async def test_replay_prints_what_the_pipeline_stored_and_stores_nothing(
    episode: tuple[Path, PollContext],
) -> None:
    config, ctx = episode
    before = len(await stored_signals(ctx))
    window = ("--since", "2025-06-01", "--until", "2025-07-01")
    result = await kmon("--config", str(config), "rules", "replay", *window, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert kinds(report["signals"]) == EXPECTED
    assert len(report["signals"]) == len(EXPECTED)
    assert report["hits"]["policy-move"] == 2  # NAVER 06-18 and 06-19
    # NAVER 06-18 and 06-19 (besides policy-move), Kakao 06-19.
    assert report["hits"]["policy-high"] == 3
    assert report["hits"]["source-stale"] == "not replayed"
    assert len(await stored_signals(ctx)) == before

    text = await kmon("--config", str(config), "rules", "replay", *window)
    assert text.exit_code == 0
    out = text.output
    assert "6 signals would be stored" in out
    assert "2025-06-18 10:30  policy_move  policy-move [critical]  035420" in out
    assert "2025-06-19 15:30  policy_move  policy-move [critical]  035420" in out
    assert "2025-06-19 15:30  policy_move  policy-high [warning]  035720" in out
    assert "window: news after" in out and "about the entity" in out


async def test_a_narrower_rules_file_changes_what_the_replay_says(
    episode: tuple[Path, PollContext], tmp_path: Path
) -> None:
    config, _ = episode
    rules = tmp_path / "rules.yaml"
    rules.write_text("disabled: [policy-high]\n", encoding="utf-8")
    result = await kmon(
        "--config", str(config), "rules", "replay", "--since", "2025-06-01",
        "--rules", str(rules), "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    got = kinds(json.loads(result.output)["signals"])
    # Kakao's 06-19 move held only policy-high; NAVER's policy moves hold policy-move.
    assert got == EXPECTED - {("policy_move", "policy-high", KAKAO, "2025-06-19")}


async def test_signals_list_and_show(episode: tuple[Path, PollContext]) -> None:
    config, ctx = episode
    base = ("--config", str(config), "signals")
    listed = await kmon(*base, "list", "--ticker", KAKAO, "--format", "json")
    assert kinds(json.loads(listed.output)) == {("policy_move", "policy-high", KAKAO, "2025-06-19")}
    critical = await kmon(*base, "list", "--severity", "critical", "--format", "csv")
    lines = critical.output.splitlines()
    assert lines[0].startswith("id,event_time,created_at,kind,rule")
    # NAVER's two policy moves (06-19, then 06-18: newest first).
    assert len(lines) == 3 and all(",policy-move," in line for line in lines[1:])
    assert [line.rsplit(",", 1)[1] for line in lines[1:]] == [
        f"policy_move:{NAVER}:2025-06-19",
        f"policy_move:{NAVER}:2025-06-18",
    ]
    news = await kmon(*base, "list", "--kind", "news", "--since", "2025-06-17")
    assert "JP모건" in news.output and "하정우" not in news.output
    by_rule = await kmon(*base, "list", "--rule", "ai-platform-big-move", "--format", "json")
    assert [r["subject"] for r in json.loads(by_rule.output)] == [NAVER]

    rows = await stored_signals(ctx)
    (story,) = [r for r in rows if r.subject == "ha-jung-woo"]
    shown = await kmon(*base, "show", str(story.id))
    assert shown.exit_code == 0
    assert "items (3):" in shown.output
    assert "rule ai-appointment [warning]" in shown.output
    # The score, part by part, as the rules weighed the story.
    assert re.search(r"score: \d+ \(rule ai-appointment 60, a theme in the title 15", shown.output)
    missing = await kmon(*base, "show", "999999")
    assert missing.exit_code == 1 and "no signal with id 999999" in missing.output
    bad = await kmon(*base, "list", "--ticker", "0354%")
    assert bad.exit_code == 2
