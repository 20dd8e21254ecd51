"""The admin CLI in-process (click's runner) on real databases."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from adapters.records import RawItem
from monitor.cli.main import main
from monitor.config import SourceConfig
from monitor.db import migrate, repo
from monitor.db.engine import make_engine, make_sessionmaker
from monitor.rules.model import load_rules
from tests.feeds import entries, rss
from tests.servers import FakeSource, Reply

NOW = datetime.now(UTC)


def kmon(*args: str, config: Path | None = None) -> Result:
    argv = ["--config", str(config), *args] if config else list(args)
    return CliRunner().invoke(main, argv, catch_exceptions=False)


def config_file(tmp_path: Path, db_url: str, extra: str = "") -> Path:
    path = tmp_path / "kmon.yaml"
    path.write_text(
        f"database:\n  url: {db_url}\nsources:\n"
        "  - name: yna\n    url: https://www.yna.co.kr/rss/news.xml\n"
        "  - name: herald\n    url: https://www.koreaherald.com/rss/newsAll\n" + extra,
        encoding="utf-8",
    )
    return path


async def _seed(db_url: str) -> None:
    engine = make_engine(db_url)
    sm = make_sessionmaker(engine)
    try:
        async with sm.begin() as session:
            await repo.sync_sources(
                session,
                [
                    SourceConfig(name="yna", url="https://www.yna.co.kr/rss/news.xml"),
                    SourceConfig(name="herald", url="https://www.koreaherald.com/rss/newsAll"),
                ],
                now=NOW,
            )
            states = {s.name: s for s in await repo.load_sources(session)}
            await repo.insert_items(
                session,
                states["yna"],
                [
                    RawItem(
                        title="하정우, 초대 AI수석 임명",
                        url="https://www.yna.co.kr/view/AKR1",
                        guid="AKR1",
                        summary="네이버 AI 센터장 출신",
                        published_at=NOW - timedelta(hours=1),
                    ),
                    RawItem(
                        title="Old news",
                        url=None,
                        guid="AKR0",
                        summary="",
                        published_at=NOW - timedelta(days=5),
                        date_estimated=True,
                    ),
                ],
                fetched_at=NOW,
            )
    finally:
        await engine.dispose()


@pytest.fixture
def seeded(db_url: str, tmp_path: Path) -> Path:
    asyncio.run(_seed(db_url))
    return config_file(tmp_path, db_url)


def test_items_list_formats(seeded: Path) -> None:
    table = kmon("items", "list", config=seeded)
    assert table.exit_code == 0
    assert "하정우, 초대 AI수석 임명" in table.output
    assert "Old news" in table.output

    as_json = json.loads(kmon("items", "list", "--format", "json", config=seeded).output)
    assert [i["title"] for i in as_json] == ["하정우, 초대 AI수석 임명", "Old news"]
    assert as_json[0]["published_at"].endswith("+09:00")  # shown in KST
    assert as_json[1]["date_estimated"] is True

    rows = list(
        csv.DictReader(io.StringIO(kmon("items", "list", "--format", "csv", config=seeded).output))
    )
    assert [r["source"] for r in rows] == ["yna", "yna"]


def test_items_list_filters(seeded: Path) -> None:
    def titles(*args: str) -> list[str]:
        out = kmon("items", "list", "--format", "json", *args, config=seeded)
        assert out.exit_code == 0, out.output
        return [i["title"] for i in json.loads(out.output)]

    assert titles("--since", "2d") == ["하정우, 초대 AI수석 임명"]
    assert titles("--until", "2d") == ["Old news"]
    assert titles("--search", "ai수석") == ["하정우, 초대 AI수석 임명"]
    assert titles("--source", "herald") == []
    assert titles("--limit", "1") == ["하정우, 초대 AI수석 임명"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "banana"], "Invalid value for '--since': 'banana' is not a time"),
        (["--until", "2025-02-30"], "Invalid value for '--until'"),
        (["--limit", "0"], "Invalid value for '--limit'"),
        (["--format", "xml"], "Invalid value for '--format'"),
    ],
)
def test_bad_filters_exit_2(seeded: Path, args: list[str], message: str) -> None:
    result = kmon("items", "list", *args, config=seeded)
    assert result.exit_code == 2
    assert message in result.output


def test_items_show(seeded: Path) -> None:
    listed = json.loads(kmon("items", "list", "--format", "json", config=seeded).output)
    shown = kmon("items", "show", str(listed[0]["id"]), config=seeded)
    assert shown.exit_code == 0
    assert "하정우, 초대 AI수석 임명" in shown.output
    assert "네이버 AI 센터장 출신" in shown.output
    missing = kmon("items", "show", "999999", config=seeded)
    assert missing.exit_code == 1
    assert "no item with id 999999" in missing.output


def test_sources_list(seeded: Path) -> None:
    table = kmon("sources", "list", config=seeded)
    assert table.exit_code == 0
    assert "yna" in table.output and "herald" in table.output
    data = json.loads(kmon("sources", "list", "--format", "json", config=seeded).output)
    assert {s["name"]: s["status"] for s in data} == {"herald": "new", "yna": "new"}


def test_db_current_and_upgrade(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    behind = kmon("db", "current", config=cfg)
    assert behind.exit_code == 1
    assert "empty (behind" in behind.output
    assert kmon("db", "upgrade", config=cfg).exit_code == 0
    current = kmon("db", "current", config=cfg)
    (head,) = migrate.head_revisions()
    assert (current.exit_code, current.output.strip()) == (0, f"{head} (current)")


def test_poll_refuses_a_database_that_is_behind(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    result = kmon("poll", config=cfg)
    assert result.exit_code == 1
    assert result.output.strip().endswith("or start with `kmon run --migrate`)")
    assert len(result.output.strip().splitlines()) == 1


def test_config_check(tmp_path: Path) -> None:
    good = config_file(tmp_path, "sqlite+aiosqlite:///x.db")
    rules = len(load_rules(None).rules)
    expected = f"{good}: ok (2 sources, {rules} rules)"
    assert kmon("config", "check", str(good)).output.strip() == expected
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - name: x\n    url: https://e.kr/rss\n    interval: 5\n")
    result = kmon("config", "check", str(bad))
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"kmon: config error: {bad}:2: sources[0]: interval 5s is below the 60s floor "
        "for remote sources"
    )


def test_a_bad_config_stops_any_command_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "kmon.yaml"
    bad.write_text("database:\n  url: oracle://x\n")
    result = kmon("items", "list", config=bad)
    assert result.exit_code == 2
    assert f"{bad}:2: database.url: unsupported database scheme" in result.output
    assert kmon("--config", str(tmp_path / "nope.yaml"), "items", "list").exit_code == 2


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, "postgresql+asyncpg://kmon:s3cret@db.internal/kmon")
    shown = kmon("config", "show", config=cfg)
    assert shown.exit_code == 0
    assert "s3cret" not in shown.output
    assert "postgresql+asyncpg://kmon:***@db.internal/kmon" in shown.output
    data = json.loads(kmon("config", "show", "--format", "json", config=cfg).output)
    assert [s["name"] for s in data["sources"]] == ["yna", "herald"]


async def test_a_refused_source_shows_auth_failed(
    db_url: str, tmp_path: Path, http_server: FakeSource
) -> None:
    """`kmon poll` against a feed that answers 401: the source is `auth_failed` in
    `kmon sources list`, with a `source_auth` signal; when it answers again, `ok`."""
    http_server.sequence("/paywalled", [Reply(status=401), Reply(rss(entries(1)))])
    path = tmp_path / "kmon.yaml"
    path.write_text(
        f"database:\n  url: {db_url}\nquotes:\n  enabled: false\n"
        f"sources:\n  - name: paywalled\n    url: {http_server.url('/paywalled')}\n",
        encoding="utf-8",
    )
    assert (await asyncio.to_thread(kmon, "poll", "--migrate", config=path)).exit_code == 0
    listed = await asyncio.to_thread(kmon, "sources", "list", "--format", "json", config=path)
    [source] = json.loads(listed.output)
    assert (source["status"], source["errors"]) == ("auth_failed", 1)
    assert source["last_error"].startswith("http_401")
    table = (await asyncio.to_thread(kmon, "sources", "list", config=path)).output
    assert "auth_failed" in table
    signals = await asyncio.to_thread(
        kmon, "signals", "list", "--kind", "source_auth", "--format", "json", config=path
    )
    assert [(s["rule"], s["subject"]) for s in json.loads(signals.output)] == [
        ("source-auth", "paywalled")
    ]
    # Asked again (by name, not waiting for the daily re-check), it answers: cleared.
    assert (await asyncio.to_thread(kmon, "poll", "paywalled", config=path)).exit_code == 0
    listed = await asyncio.to_thread(kmon, "sources", "list", "--format", "json", config=path)
    assert json.loads(listed.output)[0]["status"] == "ok"


_SOURCE = "sources:\n  - name: yna\n    url: https://www.yna.co.kr/rss/news.xml\n"
_BAD_INPUT = [
    # (what the config file holds beyond a SQLite URL, the command line, the error)
    ("", ["items", "list", "--since", "99999999d"], "is out of the range of dates"),
    ("", ["items", "list", "--since", "0001-01-01"], "is out of the range of dates"),
    ("", ["items", "list", "--until", "9999-12-31T23:00-05:00"], "is out of the range"),
    ("", ["items", "list", "--since", "banana"], "'banana' is not a time"),
    ("", ["items", "show", "9223372036854775808"], "Invalid value for 'ITEM_ID'"),
    ("", ["signals", "show", "9223372036854775808"], "Invalid value for 'SIGNAL_ID'"),
    ("", ["alerts", "retry", "9223372036854775808"], "Invalid value for '[DELIVERY_ID]'"),
    ("", ["items", "lst"], "No such command 'lst'"),
    ("url:pg://postgres@127.0.0.1:/kmon", ["items", "list"], "database.url: the port must"),
    ("url:pg://postgres@127.0.0.1:0/kmon", ["items", "list"], "database.url: the port must"),
    ("url:pg://postgres@127.0.0.1:99999/kmon", ["items", "list"], "not a database URL"),
    (
        "url:pg://postgres@127.0.0.1/kmon?sslmode=bogus",
        ["items", "list"],
        "database.url: sslmode 'bogus' is not one of disable, allow",
    ),
    (_SOURCE + "    interval: .inf\n", ["config", "check"], "interval: must be a finite"),
    (_SOURCE + "    interval: .inf\n", ["poll"], "interval: must be a finite"),
    (_SOURCE + "    interval: 99999999999d\n", ["run"], "longer than the 30 days allowed"),
    ("quotes:\n  after_close: 31d\n", ["poll"], "quotes.after_close: 2.6784e+06s is longer"),
]


@pytest.mark.parametrize(("config", "args", "message"), _BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, config: str, args: list[str], message: str
) -> None:
    if config.startswith("url:"):
        url, config = config.removeprefix("url:").replace("pg:", "postgresql+asyncpg:"), ""
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'kmon.db'}"
    path = tmp_path / "kmon.yaml"
    path.write_text(f"database:\n  url: {url}\n{config}", encoding="utf-8")
    if args == ["config", "check"]:
        args = [*args, str(path)]
    result = CliRunner().invoke(main, ["--config", str(path), *args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("kmon: ")
    assert message in line


def test_a_libpq_sslmode_reaches_postgresql(db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("sslmode is a PostgreSQL setting")
    cfg = config_file(tmp_path, f"{db_url}?sslmode=disable")
    current = kmon("db", "current", config=cfg)
    assert (current.exit_code, current.output.strip().endswith("(current)")) == (0, True)
