"""``kmon alerts list | retry | test`` in-process (click's runner) on real databases."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from adapters.errors import PermanentError
from monitor.cli.main import main
from monitor.db.engine import make_engine, make_sessionmaker
from monitor.db.schema import Delivery
from tests.monitor.alerts.outbox_support import ScriptedChannel, deliveries, signal_row
from tests.monitor.alerts.slack_server import (
    WEBHOOK_SECRET,
    Fault,
    rate_limited,
    refused,
    running_slack_server,
    server_error,
)
from tests.monitor.alerts.smtp_server import (
    USERNAME,
    make_tls_files,
    refused_port,
    running_smtp_server,
)

NOW = datetime.now(UTC).replace(microsecond=0)


def kmon(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


def _delivery(signal_id: int, channel: str, status: str, age: timedelta, **kw: Any) -> Delivery:
    return Delivery(
        signal_id=signal_id,
        route="r",
        channel=channel,
        status=status,
        due_at=NOW - age,
        attempts=kw.pop("attempts", 1),
        created_at=NOW - age,
        **kw,
    )


async def _seed(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            signals = [
                signal_row(headline="네이버, 소버린 AI 확대", event_time=NOW),
                signal_row(kind="move", headline="NAVER 035420 +15.25%", event_time=NOW),
                signal_row(headline="카카오 AI 규제", event_time=NOW),
                signal_row(headline="Old news", event_time=NOW - timedelta(days=5)),
            ]
            session.add_all(signals)
            await session.flush()
            a, b, c, d = (s.id for s in signals)
            session.add_all(
                [
                    _delivery(
                        a,
                        "chat",
                        "sent",
                        timedelta(minutes=40),
                        sent_at=NOW - timedelta(minutes=39),
                        message_key="kmon-abc",
                        response="200 ok",
                    ),
                    _delivery(
                        b, "chat", "dead", timedelta(minutes=30), last_error="http_404: no_service"
                    ),
                    _delivery(
                        c, "mail", "pending", timedelta(minutes=20), held="quiet", attempts=0
                    ),
                    _delivery(
                        d, "mail", "dead", timedelta(days=5), attempts=12, last_error="gave up"
                    ),
                ]
            )
    finally:
        await engine.dispose()


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Path:
    asyncio.run(_seed(db_url))
    path = tmp_path / "kmon.yaml"
    path.write_text(f"database:\n  url: {db_url}\nsources: []\n", encoding="utf-8")
    return path


def _listed(config: Path, *args: str) -> list[dict[str, Any]]:
    result = kmon(config, "alerts", "list", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


def test_list_formats(config: Path) -> None:
    table = kmon(config, "alerts", "list")
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[0].split()[:4] == ["id", "created", "(KST)", "status"]
    assert "pending (quiet)" in table.output
    assert "http_404: no_service" in table.output and "네이버, 소버린 AI 확대" in table.output

    rows = _listed(config)
    assert [r["headline"] for r in rows] == [
        "카카오 AI 규제",
        "NAVER 035420 +15.25%",
        "네이버, 소버린 AI 확대",
        "Old news",
    ]  # newest first
    sent = rows[2]
    assert (sent["status"], sent["response"], sent["message_key"]) == ("sent", "200 ok", "kmon-abc")
    assert sent["created_at"].endswith("+09:00")
    assert (sent["kind"], sent["channel"], sent["route"]) == ("news", "chat", "r")

    text = kmon(config, "alerts", "list", "--format", "csv").output
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [r["status"] for r in parsed] == ["pending", "dead", "sent", "dead"]


def test_list_filters(config: Path) -> None:
    def statuses(*args: str) -> list[str]:
        return [r["status"] for r in _listed(config, *args)]

    assert statuses("--status", "dead") == ["dead", "dead"]
    assert statuses("--status", "dead", "--since", "2d") == ["dead"]
    assert statuses("--status", "sent") == ["sent"]
    assert statuses("--status", "suppressed") == []
    assert statuses("--channel", "mail") == ["pending", "dead"]
    assert statuses("--limit", "1") == ["pending"]
    assert kmon(config, "alerts", "list", "--status", "lost").exit_code == 2
    bad = kmon(config, "alerts", "list", "--since", "banana")
    assert bad.exit_code == 2 and "'banana' is not a time" in bad.output
    assert kmon(config, "alerts", "list", "--channel", "nope").output.strip() == "(none)"


def test_retry_dead_makes_every_dead_row_due_now(config: Path) -> None:
    result = kmon(config, "alerts", "retry", "--dead")
    assert (result.exit_code, result.output.strip()) == (
        0,
        "2 dead deliveries → pending, due now",
    )
    rows = {r["headline"]: r for r in _listed(config)}
    for headline, error in (
        ("NAVER 035420 +15.25%", "http_404: no_service"),
        ("Old news", "gave up"),
    ):
        row = rows[headline]
        assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 0, error)
        assert datetime.fromisoformat(row["due_at"]) >= NOW
    assert rows["네이버, 소버린 AI 확대"]["status"] == "sent"
    again = kmon(config, "alerts", "retry", "--dead")
    assert again.output.strip() == "0 dead deliveries → pending, due now"


def test_retry_dead_of_one_channel(config: Path) -> None:
    result = kmon(config, "alerts", "retry", "--dead", "--channel", "mail")
    assert result.output.strip() == "1 dead delivery → pending, due now"
    assert [r["channel"] for r in _listed(config, "--status", "dead")] == ["chat"]


def test_retry_one(config: Path) -> None:
    sent_id = next(r["id"] for r in _listed(config) if r["status"] == "sent")
    result = kmon(config, "alerts", "retry", str(sent_id))
    assert (result.exit_code, result.output.strip()) == (
        0,
        f"delivery {sent_id}: sent → pending, due now",
    )
    row = next(r for r in _listed(config) if r["id"] == sent_id)
    assert (row["status"], row["attempts"], row["held"]) == ("pending", 0, None)
    missing = kmon(config, "alerts", "retry", "99999")
    assert (missing.exit_code, missing.output.strip()) == (1, "kmon: no delivery with id 99999")


@pytest.mark.parametrize("args", [[], ["1", "--dead"], ["1", "--channel", "mail"], ["abc"]])
def test_retry_usage_errors(config: Path, args: list[str]) -> None:
    assert kmon(config, "alerts", "retry", *args).exit_code == 2


# --- alerts test -------------------------------------------------------------------


@pytest.fixture
def plain_config(tmp_path: Path) -> Path:
    path = tmp_path / "kmon.yaml"
    path.write_text("sources: []\n", encoding="utf-8")
    return path


def channel_config(path: Path, channels: dict[str, Any]) -> Path:
    """A config file whose ``alerts.channels`` are ``channels`` (YAML is JSON's superset)."""
    path.write_text(
        "sources: []\nalerts:\n  channels: " + json.dumps(channels) + "\n", encoding="utf-8"
    )
    return path


def test_test_sends_through_the_real_console_channel(plain_config: Path) -> None:
    channel_config(plain_config, {"console": {"type": "console", "stream": "stdout"}})
    result = kmon(plain_config, "alerts", "test", "console")
    assert result.exit_code == 0, result.output
    printed, answer = result.output.strip().splitlines()
    assert json.loads(printed)["title"] == "kmon test message: this channel works"
    assert answer == "console: sent: wrote 1 line"


async def test_test_posts_to_slack_and_prints_its_answer(plain_config: Path) -> None:
    async with running_slack_server() as slack:
        channel_config(plain_config, {"chat": {"type": "slack", "webhook_url": slack.url}})
        result = await asyncio.to_thread(kmon, plain_config, "alerts", "test", "chat")
        [post] = await slack.wait_for(1)
    assert (result.exit_code, result.output.strip()) == (0, "chat: sent: 200 ok")
    assert "kmon test message: this channel works" in post.payload["text"]


@pytest.mark.parametrize(
    ("fault", "line"),
    [
        (
            refused(404, "no_service"),
            "chat: failed (permanent): http_404: slack webhook (127.0.0.1): HTTP 404 no_service",
        ),
        (
            rate_limited("30"),
            "chat: failed (transient, retry after 30s): http_429: slack webhook (127.0.0.1):"
            " HTTP 429 rate_limited (retry after 30s)",
        ),
        (
            server_error(500),
            "chat: failed (transient): http_500: slack webhook (127.0.0.1): HTTP 500 rollup_error",
        ),
    ],
)
async def test_test_reports_slacks_refusal_and_exits_1(
    plain_config: Path, fault: Fault, line: str
) -> None:
    async with running_slack_server() as slack:
        slack.fail_next(fault)
        channel_config(plain_config, {"chat": {"type": "slack", "webhook_url": slack.url}})
        result = await asyncio.to_thread(kmon, plain_config, "alerts", "test", "chat")
    assert (result.exit_code, result.output.strip()) == (1, line)
    assert WEBHOOK_SECRET not in result.output


async def test_test_mails_through_smtp_and_prints_its_answer(
    plain_config: Path, tmp_path: Path
) -> None:
    async with running_smtp_server(make_tls_files(tmp_path)) as smtp:
        channel_config(plain_config, {"mail": smtp.email_config()})
        result = await asyncio.to_thread(kmon, plain_config, "alerts", "test", "mail")
    assert result.exit_code == 0, result.output
    # stdout only: the SMTP server's own log lines go to stderr.
    [delivery] = smtp.deliveries
    mail = delivery.message()
    assert result.stdout.splitlines() == ["mail: sent: 250 2.0.0 OK queued as kmon-1"]
    assert "kmon test message" in mail["Subject"]
    assert (delivery.tls, delivery.login) == (True, USERNAME)


async def test_test_reports_an_smtp_refusal_and_exits_1(plain_config: Path, tmp_path: Path) -> None:
    async with running_smtp_server(make_tls_files(tmp_path)) as smtp:
        smtp.fail_next("MAIL", "421 4.3.2 try again later")
        channel_config(plain_config, {"mail": smtp.email_config()})
        result = await asyncio.to_thread(kmon, plain_config, "alerts", "test", "mail")
    assert result.exit_code == 1
    assert result.stdout.strip() == (
        f"mail: failed (transient): smtp_421: smtp 127.0.0.1:{smtp.port}: 421 4.3.2 try again later"
    )


def test_test_reports_an_unreachable_smtp_server(plain_config: Path) -> None:
    with refused_port() as port:
        settings = {
            "type": "email", "host": "127.0.0.1", "port": port, "security": "none",
            "sender": "kmon@example.kr", "recipients": ["ops@example.kr"], "timeout": 5,
        }  # fmt: skip
        channel_config(plain_config, {"mail": settings})
        result = kmon(plain_config, "alerts", "test", "mail")
    assert result.exit_code == 1
    assert result.output.startswith("mail: failed (transient): ")
    assert f"127.0.0.1:{port}" in result.output


def test_test_of_an_unknown_channel_is_a_usage_error(plain_config: Path) -> None:
    channel_config(plain_config, {"chat": {"type": "console"}})
    result = kmon(plain_config, "alerts", "test", "nope")
    assert result.exit_code == 2
    assert result.output.strip() == "kmon: no channel named 'nope' (configured: chat)"


def test_test_reads_the_channel_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "kmon.yaml"
    path.write_text(
        "sources: []\nalerts:\n  channels:\n    out: {type: console, stream: stdout}\n",
        encoding="utf-8",
    )
    result = kmon(path, "alerts", "test", "out")
    assert result.exit_code == 0
    assert result.output.strip().endswith("out: sent: wrote 1 line")


async def test_retried_rows_are_sent_by_the_next_round(sessionmaker: Any) -> None:
    # What `retry --dead` writes is what the dispatcher claims.
    from monitor.alerts import admin
    from monitor.alerts.dispatch import Dispatcher
    from tests.monitor.alerts.outbox_support import FakeClock, settings, store

    alerts, clock = settings(routes=[{"name": "r", "channels": ["chat"]}]), FakeClock()
    chat = ScriptedChannel(script=[PermanentError("http_404", "gone")])
    await store(sessionmaker, alerts, signal_row(), now=clock())
    d = Dispatcher(sessionmaker, {"chat": chat}, alerts, clock)
    await d.run_once()
    clock.advance(hours=1)
    async with sessionmaker.begin() as session:
        assert await admin.retry_dead(session, now=clock()) == 1
    await d.run_once()
    [row] = await deliveries(sessionmaker)
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, "http_404: gone")
