"""The quote, ticker and market commands of the admin CLI."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from adapters.records import Quote
from monitor.cli.main import main
from monitor.db import quotes as quotes_repo
from monitor.db.engine import make_engine, make_sessionmaker
from tests.monitor.ingest.test_quotes import SURGE, naver_body, naver_item
from tests.servers import FakeSource

NOW = datetime.now(UTC).replace(microsecond=0)


def kmon(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


async def _seed(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            await quotes_repo.insert_quotes(
                session,
                [
                    Quote("035420", NOW - timedelta(minutes=10), 250_000, "naver",
                          prev_close=220_000, change=30_000, change_pct=13.64),
                    Quote("035420", NOW - timedelta(minutes=5), 253_550, "yahoo",
                          prev_close=220_000, change=33_550, change_pct=15.25),
                    Quote("KOSPI", NOW - timedelta(days=3), 2970.85, "naver",
                          prev_close=2950.2, change=20.65, change_pct=0.7),
                ],
                fetched_at=NOW,
            )  # fmt: skip
    finally:
        await engine.dispose()


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Path:
    asyncio.run(_seed(db_url))
    path = tmp_path / "kmon.yaml"
    path.write_text(f"database:\n  url: {db_url}\nsources: []\n", encoding="utf-8")
    return path


def test_quotes_latest(config: Path) -> None:
    data = json.loads(kmon(config, "quotes", "latest", "--format", "json").output)
    latest = {q["ticker"]: q for q in data}
    assert (latest["035420"]["price"], latest["035420"]["source"]) == (253_550, "yahoo")
    assert latest["035420"]["change_pct"] == 15.25
    assert latest["035420"]["as_of"].endswith("+09:00")
    assert latest["KOSPI"]["age_seconds"] >= 3 * 86400
    table = kmon(config, "quotes", "latest").output
    assert "+15.25%" in table and "253,550" in table and "2,970.85" in table
    assert "NAVER" in table and "3d" in table


def test_quotes_list(config: Path) -> None:
    rows = json.loads(
        kmon(config, "quotes", "list", "--ticker", "035420", "--format", "json").output
    )
    assert [(r["price"], r["source"]) for r in rows] == [(253_550, "yahoo"), (250_000, "naver")]
    recent = kmon(config, "quotes", "list", "--since", "1d", "--format", "csv").output
    assert [r["ticker"] for r in csv.DictReader(io.StringIO(recent))] == ["035420", "035420"]
    bad = kmon(config, "quotes", "list", "--since", "banana")
    assert bad.exit_code == 2


def test_tickers_list(config: Path) -> None:
    rows = json.loads(kmon(config, "tickers", "list", "--format", "json").output)
    assert [(t["code"], t["name_ko"], t["name_en"]) for t in rows] == [
        ("035420", "네이버", "NAVER"),
        ("035720", "카카오", "Kakao"),
        ("KOSPI", "코스피", "KOSPI Composite Index"),
    ]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2025-06-18T10:00", "KRX is open (session 2025-06-18 09:00–15:30 KST)"),
        (
            "2025-06-06T10:00",
            "KRX is closed (Memorial Day); next session 2025-06-09 09:00–15:30 KST",
        ),
        (
            "2025-06-18T15:31",
            "KRX is closed (after the close); next session 2025-06-19 09:00–15:30 KST",
        ),
        ("2025-06-21T12:00", "KRX is closed (weekend); next session 2025-06-23 09:00–15:30 KST"),
        (
            "2025-11-13T09:30",
            "KRX is closed (before the open); next session 2025-11-13 10:00–16:30 KST",
        ),
    ],
)
def test_market_status(tmp_path: Path, at: str, expected: str) -> None:
    result = CliRunner().invoke(main, ["market", "status", "--at", at])
    assert (result.exit_code, result.output.strip()) == (0, expected)


def test_market_status_json(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        main, ["market", "status", "--at", "2025-12-31T10:00", "--format", "json"]
    )
    data = json.loads(out.output)
    assert (data["open"], data["session_day"]) == (False, "2026-01-02")
    assert (
        data["session_opens_at"] == "2026-01-02T10:00:00+09:00"
    )  # the year's first day opens late


async def test_quotes_poll_command(db_url: str, tmp_path: Path, http_server: FakeSource) -> None:
    http_server.serve("/naver", SURGE)
    path = tmp_path / "kmon.yaml"
    path.write_text(
        f"database:\n  url: {db_url}\nsources: []\n"
        f"quotes:\n  providers: [naver]\n  naver_polling_url: {http_server.url('/naver')}\n",
        encoding="utf-8",
    )
    result = await asyncio.to_thread(kmon, path, "quotes", "poll")
    # The June 2025 sample is older than the last session now: every quote is refused.
    assert result.exit_code == 1
    assert (
        "rejected 035420: as-of 2025-06-18T01:30:00+00:00 is older than the last session"
        in result.output
    )
    assert result.output.strip().endswith("missing: 035420, 035720, KOSPI")


async def test_quotes_poll_stores_fresh_quotes(
    db_url: str, tmp_path: Path, http_server: FakeSource
) -> None:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    body = naver_body(
        [naver_item("035420", 253_500, 220_000), naver_item("035720", 55_100, 51_800)],
        kospi=(297_085, 295_020),
        at_ms=now_ms,
    )
    http_server.serve("/naver", body)
    path = tmp_path / "kmon.yaml"
    path.write_text(
        f"database:\n  url: {db_url}\nsources: []\n"
        f"quotes:\n  providers: [naver]\n  naver_polling_url: {http_server.url('/naver')}\n",
        encoding="utf-8",
    )
    polled = await asyncio.to_thread(kmon, path, "quotes", "poll", "--migrate")
    assert (polled.exit_code, polled.stdout.strip()) == (0, "stored 3 quotes (served by: naver 3)")
    latest = json.loads(
        (await asyncio.to_thread(kmon, path, "quotes", "latest", "--format", "json")).stdout
    )
    assert {q["ticker"]: (q["price"], q["source"]) for q in latest} == {
        "035420": (253_500, "naver"),
        "035720": (55_100, "naver"),
        "KOSPI": (2970.85, "naver"),
    }
