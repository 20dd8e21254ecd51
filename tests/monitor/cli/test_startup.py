"""Each ``kmon`` command imports what it uses, and no more (bench/cli_start.py times it).

Every command runs in a fresh interpreter, which then lists the modules it loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

PROBE = """
import json, sys
out = sys.argv.pop(1)
from monitor.cli.main import main
try:
    main(sys.argv[1:], prog_name="kmon")
except SystemExit:
    pass
with open(out, "w") as f:
    json.dump(sorted(sys.modules), f)
"""

# What only the daemon, the database layer or the alert channels need.
DAEMON = {"aiohttp", "apscheduler", "alembic", "aiosmtplib", "prometheus_client", "feedparser"}
DATABASE = {"sqlalchemy", "aiosqlite", "asyncpg"}


def loaded(tmp_path: Path, *args: str) -> set[str]:
    out = tmp_path / "modules.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "KMON_CONFIG": str(tmp_path / "kmon.yaml")}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.exists(), proc.stderr
    return set(json.loads(out.read_text()))


def tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.fixture
def sqlite_config(tmp_path: Path, sqlite_template: Path) -> Path:
    db = tmp_path / "kmon.db"
    shutil.copyfile(sqlite_template, db)
    config = tmp_path / "kmon.yaml"
    config.write_text(f"database:\n  url: sqlite+aiosqlite:///{db}\nsources: []\n", "utf-8")
    return config


def test_help_loads_click_and_the_command_modules_only(tmp_path: Path) -> None:
    modules = loaded(tmp_path, "--help")
    assert "monitor.cli.items" in modules  # the probe did run the command
    heavy = DAEMON | DATABASE | {"pydantic", "pydantic_settings", "structlog", "holidays", "yaml"}
    assert not tops(modules) & heavy
    assert not {m for m in modules if m.startswith("monitor.rules")}


def test_items_list_on_sqlite_reads_without_sqlalchemy(tmp_path: Path, sqlite_config: Path) -> None:
    modules = loaded(tmp_path, "items", "list", "--limit", "20")
    assert "monitor.db.sqlite_read" in modules
    assert not tops(modules) & (DAEMON | DATABASE | {"holidays"})
    assert not {m for m in modules if m.startswith("monitor.rules")}


def test_rules_test_loads_the_rules_only(tmp_path: Path) -> None:
    (tmp_path / "kmon.yaml").write_text("sources: []\n", encoding="utf-8")
    modules = loaded(tmp_path, "rules", "test", "정부, 소버린 AI 전략 발표")
    assert "monitor.rules.match" in modules
    assert not tops(modules) & (DAEMON | DATABASE | {"holidays"})


def test_market_status_loads_the_calendar_without_the_database(tmp_path: Path) -> None:
    modules = loaded(tmp_path, "market", "status")
    assert "holidays.financial.korea_exchange" in modules
    assert not tops(modules) & (DAEMON | DATABASE)


def test_poll_on_a_current_database_loads_neither_alembic_nor_the_scheduler(
    tmp_path: Path, sqlite_config: Path
) -> None:
    modules = loaded(tmp_path, "poll")
    assert "monitor.service.runtime" in modules  # the probe did run the poll
    assert not tops(modules) & {"alembic", "apscheduler", "prometheus_client"}
    assert "monitor.service.daemon" not in modules
