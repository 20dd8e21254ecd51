"""`kmon poll` of a dart source against the loopback OpenDART, then what the CLI shows."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from adapters.records import KST
from monitor.cli.main import main
from tests.dart_server import KAKAO, KEY, NAVER, DartStandIn
from tests.servers import FakeSource


def kmon(*args: str, config: Path) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


async def run(*args: str, config: Path) -> Result:
    return await asyncio.to_thread(kmon, *args, config=config)


@pytest.fixture
def dart(http_server: FakeSource) -> DartStandIn:
    return DartStandIn(http_server)


def config_file(tmp_path: Path, db_url: str, dart: DartStandIn) -> Path:
    path = tmp_path / "kmon.yaml"
    path.write_text(
        f"database:\n  url: {db_url}\nquotes:\n  enabled: false\nsources:\n"
        f"  - {{name: dart, kind: dart, url: '{dart.url}', interval: 5m, daily_budget: 40}}\n",
        encoding="utf-8",
    )
    return path


async def test_disclosures_are_listed_by_ticker_and_type(
    db_url: str, tmp_path: Path, dart: DartStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = datetime.now(UTC).astimezone(KST).date()
    dart.file(NAVER, "단일판매ㆍ공급계약체결", today, rm="유")
    dart.file(NAVER, "[기재정정]단일판매ㆍ공급계약체결", today, rm="유")
    dart.file(KAKAO, "자기주식취득결정", today - timedelta(days=3))
    monkeypatch.setenv("KMON_DART_API_KEY", KEY)
    cfg = config_file(tmp_path, db_url, dart)

    polled = await run("poll", "--migrate", config=cfg)
    assert polled.exit_code == 0, polled.output
    assert KEY not in polled.output

    listed = await run("disclosures", "list", "--ticker", "035420", "--format", "json", config=cfg)
    rows = json.loads(listed.output)
    assert [(r["report_nm"], r["correction"], r["stock_code"]) for r in rows] == [
        ("[기재정정]단일판매ㆍ공급계약체결", True, "035420"),
        ("단일판매ㆍ공급계약체결", False, "035420"),
    ]
    table = (await run("disclosures", "list", config=cfg)).output
    assert "자기주식취득결정" in table and "카카오" in table
    kind = await run("disclosures", "list", "--type", "자기주식", "--format", "json", config=cfg)
    assert [r["corp_name"] for r in json.loads(kind.output)] == ["카카오"]
    recent = await run("disclosures", "list", "--since", "1d", "--format", "json", config=cfg)
    assert {r["corp_name"] for r in json.loads(recent.output)} == {"NAVER"}

    items = await run(
        "items", "list", "--source", "dart", "--ticker", "035420", "--format", "json", config=cfg
    )
    assert [i["title"] for i in json.loads(items.output)] == [
        "[NAVER] [기재정정]단일판매ㆍ공급계약체결",
        "[NAVER] 단일판매ㆍ공급계약체결",
    ]

    sources = json.loads((await run("sources", "list", "--format", "json", config=cfg)).output)
    # The corp-code file and one list request per company.
    assert [(s["name"], s["kind"], s["status"], s["budget"]) for s in sources] == [
        ("dart", "dart", "ok", "3/40")
    ]
    assert "3/40" in (await run("sources", "list", config=cfg)).output


@pytest.mark.parametrize(
    "args",
    [
        ["disclosures", "list", "--ticker", "NAVER"],
        ["items", "list", "--ticker", "35420"],
        ["disclosures", "list", "--since", "banana"],
    ],
)
def test_bad_filters_exit_2_in_one_line(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "kmon.yaml"
    path.write_text(f"database:\n  url: sqlite+aiosqlite:///{tmp_path / 'k.db'}\n")
    result = kmon(*args, config=path)
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
