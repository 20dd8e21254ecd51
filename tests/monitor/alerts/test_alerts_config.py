"""Alert settings: defaults, validation, matching, and the KST clock of quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from monitor.alerting import (
    DIGEST_ROUTE,
    AlertSettings,
    Match,
    QuietHours,
    Route,
    next_at,
)
from monitor.config import ConfigError, load_settings
from tests.monitor.alerts.outbox_support import kst


def test_nothing_configured_sends_everything_to_the_console() -> None:
    alerts = AlertSettings()
    assert list(alerts.channels) == ["console"]
    assert alerts.channels["console"].type == "console"
    [route] = alerts.routes
    assert (route.name, route.channels, route.match) == ("default", ["console"], Match())
    assert route.match.matches("policy_move", "info", "anything", [])
    assert alerts.digest is None


def test_channels_without_routes_get_one_route_to_all_of_them() -> None:
    alerts = AlertSettings.model_validate(
        {"channels": {"ops": {"type": "console"}, "feed": {"type": "console"}}}
    )
    [route] = alerts.routes
    assert route.channels == ["ops", "feed"]


def test_dispatch_defaults() -> None:
    dispatch = AlertSettings().dispatch
    assert (dispatch.max_attempts, dispatch.backoff_base, dispatch.backoff_max) == (12, 10, 3600)
    assert (dispatch.lease, dispatch.batch, dispatch.max_per_message) == (120, 100, 20)


def _error(data: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as info:
        AlertSettings.model_validate(data)
    return str(info.value)


def test_a_route_naming_an_unknown_channel_is_refused_with_the_field() -> None:
    message = _error(
        {
            "channels": {"ops": {"type": "console"}, "feed": {"type": "console"}},
            "routes": [{"name": "urgent", "channels": ["ops", "slak"]}],
        }
    )
    assert "routes[0].channels[1]: unknown channel 'slak' (configured: feed, ops)" in message


def test_the_digest_channel_must_exist() -> None:
    message = _error({"channels": {"ops": {"type": "console"}}, "digest": {"channel": "mail"}})
    assert "digest.channel: unknown channel 'mail'" in message


@pytest.mark.parametrize(
    ("route", "problem"),
    [
        ({"name": "a", "channels": []}, "at least 1 item"),
        ({"name": "A b", "channels": ["chat"]}, "should match pattern"),
        ({"name": DIGEST_ROUTE, "channels": ["chat"]}, "kept for the daily digest"),
        ({"name": "a", "channels": ["chat"], "group_wait": "-5"}, "not a duration"),
        ({"name": "a", "channels": ["chat"], "group_wait": "soon"}, "not a duration"),
        ({"name": "a", "channels": ["chat"], "suppress_repeats": 0}, "greater than 0"),
        ({"name": "a", "channels": ["chat"], "throttle": {"max": 0, "per": 60}}, "max"),
        ({"name": "a", "channels": ["chat"], "throttle": {"max": 1, "per": "0s"}}, "per"),
        (
            {"name": "a", "channels": ["chat"], "quiet_hours": {"start": "25:00", "end": "7:00"}},
            "not a time of day: '25:00'",
        ),
        (
            {"name": "a", "channels": ["chat"], "quiet_hours": {"start": "7.30", "end": "9:00"}},
            "not a time of day",
        ),
        (
            {"name": "a", "channels": ["chat"], "quiet_hours": {"start": "7:00", "end": "07:00"}},
            "start and end are the same time",
        ),
        (
            {
                "name": "a",
                "channels": ["chat"],
                "match": {"min_severity": "info", "severities": ["info"]},
            },
            "min_severity or severities, not both",
        ),
        ({"name": "a", "channels": ["chat"], "match": {"kinds": ["tweet"]}}, "kinds.0"),
    ],
)
def test_route_validation(route: dict[str, object], problem: str) -> None:
    assert problem in _error({"channels": {"chat": {"type": "console"}}, "routes": [route]})


def test_route_names_are_unique() -> None:
    routes = [{"name": "a", "channels": ["chat"]}, {"name": "a", "channels": ["chat"]}]
    message = _error({"channels": {"chat": {"type": "console"}}, "routes": routes})
    assert "route name 'a' is used twice" in message


def test_durations_use_the_project_syntax() -> None:
    route = Route.model_validate(
        {
            "name": "r",
            "channels": ["chat"],
            "group_wait": "30s",
            "throttle": {"max": 3, "per": "1h"},
            "suppress_repeats": "2h",
        }
    )
    assert (route.group_wait, route.suppress_repeats) == (30.0, 7200.0)
    assert route.throttle is not None and route.throttle.per == 3600.0
    assert Route(name="r", channels=["chat"]).group_wait == 0.0  # sends at once


@pytest.mark.parametrize(
    ("text", "expected"),
    [("start: '07:30'", time(7, 30)), ("start: 7:05", time(7, 5)), ("start: 22:00", time(22))],
)
def test_clock_times_from_yaml(text: str, expected: time) -> None:
    # YAML 1.1 reads an unquoted 22:00 as the base-60 number 1320.
    data = yaml.safe_load(text)
    assert QuietHours.model_validate({**data, "end": "23:59"}).start == expected


@pytest.mark.parametrize(
    ("kind", "severity", "rule", "tickers", "match", "expected"),
    [
        ("news", "info", "r1", [], {}, True),
        ("news", "info", "r1", [], {"kinds": ["move", "policy_move"]}, False),
        ("move", "info", "r1", [], {"kinds": ["move", "policy_move"]}, True),
        ("news", "warning", "r1", [], {"min_severity": "warning"}, True),
        ("news", "info", "r1", [], {"min_severity": "warning"}, False),
        ("news", "critical", "r1", [], {"min_severity": "warning"}, True),
        ("news", "critical", "r1", [], {"severities": ["info", "warning"]}, False),
        ("news", "info", "r1", [], {"severities": ["info", "warning"]}, True),
        ("news", "info", "r1", [], {"rules": ["r2"]}, False),
        ("news", "info", "r2", [], {"rules": ["r1", "r2"]}, True),
        ("news", "info", "r1", ["035720", "035420"], {"tickers": ["035420"]}, True),
        ("news", "info", "r1", ["035720"], {"tickers": ["035420"]}, False),
        ("news", "info", "r1", [], {"tickers": ["035420"]}, False),
        ("move", "critical", "r1", ["035420"], {"kinds": ["move"], "tickers": ["035420"]}, True),
        ("news", "critical", "r1", ["035420"], {"kinds": ["move"], "tickers": ["035420"]}, False),
    ],
)
def test_match(
    kind: str,
    severity: str,
    rule: str,
    tickers: list[str],
    match: dict[str, object],
    expected: bool,
) -> None:
    assert Match.model_validate(match).matches(kind, severity, rule, tickers) is expected


@pytest.mark.parametrize(
    ("score", "expected"), [(90, True), (60, True), (59.5, False), (None, True)]
)
def test_min_score(score: float | None, expected: bool) -> None:
    match = Match.model_validate({"min_score": 60})
    assert match.matches("news", "info", "ai-policy", [], score) is expected


def test_min_score_is_a_percentage() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        Match.model_validate({"min_score": 120})


@pytest.mark.parametrize(
    ("start", "end", "now", "ends_at"),
    [
        # 22:00–07:00 crosses midnight.
        ("22:00", "07:00", kst(2025, 6, 18, 21, 59), None),
        ("22:00", "07:00", kst(2025, 6, 18, 22, 0), kst(2025, 6, 19, 7)),
        ("22:00", "07:00", kst(2025, 6, 18, 23, 30), kst(2025, 6, 19, 7)),
        ("22:00", "07:00", kst(2025, 6, 19, 3, 0), kst(2025, 6, 19, 7)),
        ("22:00", "07:00", kst(2025, 6, 19, 6, 59), kst(2025, 6, 19, 7)),
        ("22:00", "07:00", kst(2025, 6, 19, 7, 0), None),
        # Within one day.
        ("12:00", "13:30", kst(2025, 6, 18, 12, 45), kst(2025, 6, 18, 13, 30)),
        ("12:00", "13:30", kst(2025, 6, 18, 13, 30), None),
        ("12:00", "13:30", kst(2025, 6, 18, 2, 0), None),
    ],
)
def test_quiet_hours_in_kst(start: str, end: str, now: datetime, ends_at: datetime | None) -> None:
    quiet = QuietHours.model_validate({"start": start, "end": end})
    assert quiet.end_after(now) == ends_at


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (kst(2025, 6, 18, 7, 59), kst(2025, 6, 18, 8)),
        (kst(2025, 6, 18, 8, 0), kst(2025, 6, 19, 8)),
        (kst(2025, 6, 18, 23, 30), kst(2025, 6, 19, 8)),
        # 23:30 UTC is 08:30 KST the next day: the digest after it is the day after.
        (datetime(2025, 6, 18, 23, 30, tzinfo=UTC), kst(2025, 6, 20, 8)),
    ],
)
def test_next_digest_time(now: datetime, expected: datetime) -> None:
    assert next_at(time(8, 0), now) == expected


def test_errors_name_the_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "kmon.yaml"
    path.write_text(
        "sources: []\n"
        "alerts:\n"
        "  channels:\n"
        "    ops: {type: console}\n"
        "  routes:\n"
        "    - name: urgent\n"
        "      channels: [ops, slak]\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith(f"{path}:5: alerts.routes:")
    assert "routes[0].channels[1]: unknown channel 'slak'" in message
