"""The console channel (one log line per signal) and the channel factory."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime

import aiohttp
import pytest
import structlog
from pydantic import TypeAdapter, ValidationError

from monitor.alerting import ChannelConfig, ConsoleConfig
from monitor.alerts.channels import build_channel
from monitor.alerts.console import ConsoleChannel
from monitor.alerts.email import EmailChannel
from monitor.alerts.message import AlertMessage, AlertSignal, MoveLine
from monitor.alerts.slack import SlackChannel
from monitor.logs import configure_logging

NEWS = AlertSignal(
    id=7,
    kind="policy_move",
    rule_id="policy-sovereign-ai",
    severity="warning",
    subject="035420",
    title="과기정통부, 소버린 AI 육성 전략 발표",
    event_time=datetime(2025, 6, 18, 0, 30, tzinfo=UTC),
    url="https://www.yna.co.kr/view/AKR20250618000100017",
    source="연합뉴스",
    move=MoveLine(ticker="035420", name="NAVER", price=215000.0, change_pct=3.2),
    terms=("소버린 AI",),
    why="AI policy news, then NAVER moved",
)


def message(*signals: AlertSignal, **fields: object) -> AlertMessage:
    return AlertMessage(key="k", route="default", signals=signals or (NEWS,), **fields)  # type: ignore[arg-type]


def console(stream: str = "log", out: io.StringIO | None = None) -> ConsoleChannel:
    config = ConsoleConfig.model_validate({"type": "console", "stream": stream})
    return ConsoleChannel("console", config, stdout=out)


async def test_logs_one_alert_line_per_signal() -> None:
    second = replace(NEWS, id=8, severity="critical", title="카카오 급등", url=None)

    with structlog.testing.capture_logs() as logs:
        sent = await console().send(message(NEWS, second, folded=2))

    assert sent.detail == "wrote 2 lines (+2 folded)"
    assert [entry["event"] for entry in logs] == ["alert", "alert"]
    first, other = logs
    assert first["logger"] == "kmon.alert"
    assert first["log_level"] == "warning"
    assert other["log_level"] == "critical"
    assert first["severity"] == "warning"
    assert first["rule"] == "policy-sovereign-ai"
    assert first["subject"] == "035420"
    assert first["title"] == "과기정통부, 소버린 AI 육성 전략 발표"
    assert first["url"] == NEWS.url
    assert first["why"] == "AI policy news, then NAVER moved; terms: 소버린 AI"
    assert first["event_time"] == "2025-06-18T09:30:00+09:00"
    assert first["folded"] == 2
    assert other["url"] is None


async def test_json_log_lines_keep_hostile_text_as_data() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    hostile = replace(NEWS, title='줄1\n{"event": "forged"}\x1b[2J\u202e끝', why="a\r\nb")

    await console().send(message(hostile))

    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["event"] == "alert"
    assert record["title"] == '줄1 {"event": "forged"} [2J 끝'
    assert record["why"].startswith("a b")


async def test_stdout_stream_writes_one_json_object_per_signal() -> None:
    out = io.StringIO()
    second = replace(NEWS, id=8, title="둘째\n줄")

    sent = await console("stdout", out).send(message(NEWS, second))

    assert sent.detail == "wrote 2 lines"
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["title"] for r in records] == [NEWS.title, "둘째 줄"]
    assert {r["logger"] for r in records} == {"kmon.alert"}
    assert records[0]["move"] == {
        "ticker": "035420",
        "name": "NAVER",
        "price": 215000.0,
        "change_pct": 3.2,
    }
    assert "과기정통부" in out.getvalue()  # not \uXXXX escapes


def test_console_config_refuses_unknown_streams_and_fields() -> None:
    with pytest.raises(ValidationError):
        ConsoleConfig.model_validate({"type": "console", "stream": "stderr"})
    with pytest.raises(ValidationError):
        ConsoleConfig.model_validate({"type": "console", "colour": True})


# -- the factory -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "channel_type"),
    [
        ({"type": "console"}, ConsoleChannel),
        ({"type": "slack", "webhook_url": "https://hooks.slack.com/services/x"}, SlackChannel),
        (
            {
                "type": "email",
                "host": "smtp.example.kr",
                "sender": "kmon@example.kr",
                "recipients": ["ops@example.kr"],
            },
            EmailChannel,
        ),
    ],
)
async def test_build_channel_makes_the_configured_kind(
    settings: dict[str, object], channel_type: type
) -> None:
    config = TypeAdapter(ChannelConfig).validate_python(settings)

    async with aiohttp.ClientSession() as http:
        channel = build_channel("ops", config, http)

    assert isinstance(channel, channel_type)
    assert channel.name == "ops"


def test_channel_config_errors_name_the_fields_of_the_kind_meant() -> None:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(ChannelConfig).validate_python({"type": "slack"})

    [error] = caught.value.errors()
    # Slack's error, not console's or email's: a webhook, or a bot's token and channel.
    assert error["loc"] == ("slack",)
    assert "needs webhook_url, or token and channel" in error["msg"]


def test_channel_config_refuses_unknown_kinds() -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(ChannelConfig).validate_python({"type": "pager"})
