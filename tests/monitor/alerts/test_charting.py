"""Charts read from the store: the June 2025 episode polled through the pipeline
(tests/monitor/ingest/test_replay.py), 06-18's session filled in with quotes every ten
minutes (tests/episode.py), then NAVER's ``policy_move`` drawn, through the CLI too."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest
from PIL import Image
from sqlalchemy import select
from structlog.testing import capture_logs

from monitor.alerting import AlertSettings, EmailConfig, SlackConfig
from monitor.alerts.channels import build_channel
from monitor.alerts.charting import CHART_KINDS, signal_chart, ticker_chart
from monitor.alerts.dispatch import Dispatcher, MessageOutcome
from monitor.alerts.email import SIZE_CAP, render_email
from monitor.alerts.message import AlertMessage, AlertSignal, ChartImage, shows_charts
from monitor.alerts.outbox import alert_signal, enqueue
from monitor.alerts.slack import SlackChannel
from monitor.chart import relative_move, render
from monitor.db.quotes import insert_quotes
from monitor.db.schema import SignalRow
from monitor.ingest.context import PollContext
from monitor.timefmt import KST
from tests.episode import INTRADAY_0618, KOSPI, NAVER, intraday_quotes
from tests.monitor.alerts.slack_server import BOT_TOKEN, SlackWebhookServer
from tests.monitor.alerts.smtp_server import SmtpServer
from tests.monitor.ingest.test_replay import episode, kmon

__all__ = ["episode"]

NAMES = {NAVER: "NAVER", KOSPI: "코스피"}


@pytest.fixture
async def charted(episode: tuple[Path, PollContext]) -> AsyncIterator[tuple[Path, PollContext]]:
    config, ctx = episode
    async with ctx.sessionmaker.begin() as session:
        await insert_quotes(session, intraday_quotes(), fetched_at=datetime.now(KST))
    yield config, ctx


async def policy_move(ctx: PollContext, day: str) -> SignalRow:
    async with ctx.sessionmaker() as session:
        rows = (
            await session.scalars(
                select(SignalRow).where(
                    SignalRow.kind == "policy_move",
                    SignalRow.subject == NAVER,
                    SignalRow.rule_id == "policy-move",
                )
            )
        ).all()
    (row,) = [r for r in rows if r.event_time.astimezone(KST).date().isoformat() == day]
    return row


async def test_the_naver_policy_move_is_drawn_with_the_news_before_it(
    charted: tuple[Path, PollContext],
) -> None:
    _, ctx = charted
    row = await policy_move(ctx, "2025-06-18")
    async with ctx.sessionmaker() as session:
        chart = await signal_chart(session, row.id, names=NAMES)
    assert chart is not None
    # The appointment broke on 06-16, two sessions before the move: daily closes from
    # five sessions before it, the news marked, 06-18's close last.
    assert not chart.intraday
    (event,) = chart.events
    assert event.at.astimezone(KST).date().isoformat() == "2025-06-16"
    assert "하정우" in event.label
    days = [t.astimezone(KST).date().isoformat() for t, _ in chart.series.points]
    assert days[0] == "2025-06-09" and days[-1] == "2025-06-18"
    assert chart.series.points[-1][1] == 243_500
    assert chart.index is not None and chart.index.points[-1][1] == 2_972.19
    # The move annotated is the one the alert names: +15.25 % at 10:30, 14.55 beyond.
    own, versus = relative_move(chart)
    assert own == pytest.approx(15.25)
    assert versus == pytest.approx(14.55, abs=0.01)
    assert chart.missing == ()
    image = Image.open(io.BytesIO(render(chart).png))
    assert image.size == (chart.width, chart.height)


async def test_a_session_alone_is_drawn_from_its_quotes(
    charted: tuple[Path, PollContext],
) -> None:
    _, ctx = charted
    async with ctx.sessionmaker() as session:
        chart = await ticker_chart(
            session,
            NAVER,
            since=datetime(2025, 6, 18, 9, tzinfo=KST),
            until=datetime(2025, 6, 18, 15, 31, tzinfo=KST),
            names=NAMES,
        )
    assert chart.intraday
    assert chart.series.points[0][1] == 220_000  # 06-17's close, at the opening bell
    assert chart.series.points[-1][1] == INTRADAY_0618[-1][1]
    assert chart.index is not None and chart.index.points[0][1] == 2_950.30
    # Through the close: +10.68 %, 9.94 points beyond the KOSPI's +0.74 % (the closes).
    own, versus = relative_move(chart)
    assert own == pytest.approx(10.68, abs=0.01)
    assert versus == pytest.approx(9.94, abs=0.015)


async def test_a_range_of_weeks_is_drawn_from_daily_closes(
    charted: tuple[Path, PollContext],
) -> None:
    _, ctx = charted
    async with ctx.sessionmaker() as session:
        chart = await ticker_chart(
            session,
            NAVER,
            since=datetime(2025, 5, 19, tzinfo=KST),
            until=datetime(2025, 6, 20, tzinfo=KST),
            names=NAMES,
        )
    assert not chart.intraday
    # 06-19 has no bar stored (its close came as a quote): the quote stands in.
    assert chart.series.points[-2][1] == 243_500
    assert chart.series.points[-1][1] == 252_000
    assert chart.index is not None and chart.index.points[-1][1] == 2_977.74
    assert len(chart.series.points) == len(chart.index.points) > 20


async def test_a_session_without_quotes_falls_back_to_closes_and_says_so(
    charted: tuple[Path, PollContext],
) -> None:
    _, ctx = charted
    async with ctx.sessionmaker() as session:
        chart = await ticker_chart(
            session,
            NAVER,
            since=datetime(2025, 6, 16, 9, tzinfo=KST),
            until=datetime(2025, 6, 16, 15, 30, tzinfo=KST),
            names=NAMES,
        )
    assert not chart.intraday
    assert any("일봉" in note for note in chart.missing)
    assert chart.series.points


async def test_news_signals_have_no_chart(charted: tuple[Path, PollContext]) -> None:
    _, ctx = charted
    async with ctx.sessionmaker() as session:
        news = (await session.scalars(select(SignalRow).where(SignalRow.kind == "news"))).first()
        assert news is not None and news.kind not in CHART_KINDS
        assert await signal_chart(session, news.id) is None
        assert await signal_chart(session, 10_000_000) is None


async def test_the_cli_writes_the_same_chart_to_a_file_and_to_stdout(
    charted: tuple[Path, PollContext], tmp_path: Path
) -> None:
    config, ctx = charted
    row = await policy_move(ctx, "2025-06-18")
    out = tmp_path / "naver.png"
    result = await kmon("--config", str(config), "signals", "chart", str(row.id), "-o", str(out))
    assert result.exit_code == 0, result.output
    png = out.read_bytes()
    assert Image.open(io.BytesIO(png)).size == (800, 420)
    piped = await kmon("--config", str(config), "signals", "chart", str(row.id), "-o", "-")
    assert piped.exit_code == 0
    assert piped.stdout_bytes == png


async def test_quotes_chart_and_its_usage_errors(
    charted: tuple[Path, PollContext], tmp_path: Path
) -> None:
    config, _ = charted
    out = tmp_path / "month.png"
    args = ["--config", str(config), "quotes", "chart", NAVER]
    ok = await kmon(*args, "--since", "2025-05-19", "--until", "2025-06-20", "-o", str(out))
    assert ok.exit_code == 0, ok.output
    assert Image.open(out).size == (800, 420)
    for bad, expected in (
        (["--since", "2025-06-20", "--until", "2025-06-19", "-o", str(out)], "is not after"),
        (["--since", "30d", "--vs", "999999", "-o", str(out)], "not a followed ticker"),
        (["--since", "30d", "-o", str(tmp_path / "x.txt")], "PNG"),
    ):
        result = await kmon(*args, *bad)
        assert result.exit_code == 2
        assert expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    missing = await kmon("--config", str(config), "signals", "chart", "999999", "-o", str(out))
    assert missing.exit_code == 1 and "no signal with id 999999" in missing.stderr


# --- in alerts ------------------------------------------------------------------------

NOW = datetime(2025, 6, 19, 15, 40, tzinfo=KST)


async def enqueued(ctx: PollContext, alerts: AlertSettings, row: SignalRow) -> None:
    async with ctx.sessionmaker.begin() as session:
        fresh = await session.get(SignalRow, row.id)
        assert fresh is not None
        assert await enqueue(session, [fresh], alerts, now=NOW) == 1


async def test_the_naver_email_alert_arrives_with_its_chart_inline(
    charted: tuple[Path, PollContext], smtp_starttls: SmtpServer
) -> None:
    _, ctx = charted
    alerts = AlertSettings.model_validate(
        {
            "channels": {"mail": smtp_starttls.email_config()},
            "routes": [
                {"name": "moves", "match": {"kinds": ["policy_move"]}, "channels": ["mail"]}
            ],
        }
    )
    row = await policy_move(ctx, "2025-06-18")
    await enqueued(ctx, alerts, row)
    mail_channel = build_channel("mail", alerts.channels["mail"], None)  # type: ignore[arg-type]
    outcomes: list[MessageOutcome] = []
    dispatcher = Dispatcher(
        ctx.sessionmaker, {"mail": mail_channel}, alerts, lambda: NOW, observers=[outcomes.append]
    )
    await dispatcher.run_once()
    # (The episode's own console deliveries find no console channel here.)
    [outcome] = [o for o in outcomes if o.channel == "mail"]
    assert (outcome.status, outcome.chart_failures) == ("sent", 0)
    # The round's chart is not held once the round is over.
    assert dispatcher._charts == {}
    [delivery] = smtp_starttls.deliveries
    assert len(delivery.data) <= SIZE_CAP
    mail = delivery.message()
    assert mail.get_content_type() == "multipart/alternative"
    plain, related = mail.get_payload()  # type: ignore[misc]
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, image = related.get_payload()
    assert image.get_content_type() == "image/png"
    cid = image["Content-ID"].strip("<>")
    page = html_part.get_content()
    assert f'src="cid:{cid}"' in page
    assert 'alt="Chart: 035420' in page
    png = image.get_content()
    assert Image.open(io.BytesIO(png)).size == (800, 420)
    # The text part is the one a mail without the chart has.
    async with ctx.sessionmaker() as session:
        fresh = await session.get(SignalRow, row.id)
    assert fresh is not None
    words = AlertMessage(key="k", route="moves", signals=(alert_signal(fresh),))
    without = render_email(words, EmailConfig.model_validate(smtp_starttls.email_config()))
    plain_without = without.get_body(preferencelist=("plain",))
    assert plain_without is not None
    assert plain.get_content() == plain_without.get_content()
    assert "+15.25%" in plain.get_content()


def test_charts_past_the_size_cap_are_left_out_and_said() -> None:
    signal = AlertSignal(
        id=7,
        kind="policy_move",
        rule_id="policy-move",
        severity="critical",
        subject=NAVER,
        title="NAVER +15.25%",
        event_time=NOW,
    )
    chart = ChartImage(7, NAVER, b"\x89PNG" + bytes(200_000), "Chart: 035420")
    config = EmailConfig.model_validate(
        {"type": "email", "host": "127.0.0.1", "sender": "k@example.kr", "recipients": ["a@b.kr"]}
    )
    message = AlertMessage(key="k", route="r", signals=(signal,), charts=(chart,))
    kept = render_email(message, config, size_cap=400_000)
    assert any(p.get_content_type() == "image/png" for p in kept.walk())
    small = render_email(message, config, size_cap=100_000)
    assert not any(p.get_content_type() == "image/png" for p in small.walk())
    html_part = small.get_body(preferencelist=("html",))
    assert html_part is not None and "1 chart(s) left out" in html_part.get_content()
    assert len(small.as_bytes()) <= 100_000


def bot_settings(slack_server: SlackWebhookServer) -> AlertSettings:
    return AlertSettings.model_validate(
        {
            "channels": {
                "desk": {
                    "type": "slack",
                    "token": BOT_TOKEN,
                    "channel": "C0KMONDESK",
                    "api_url": slack_server.api_url,
                }
            },
            "routes": [
                {"name": "moves", "match": {"kinds": ["policy_move"]}, "channels": ["desk"]}
            ],
        }
    )


async def dispatch_to_slack(
    ctx: PollContext, slack_server: SlackWebhookServer, http: aiohttp.ClientSession
) -> MessageOutcome:
    alerts = bot_settings(slack_server)
    await enqueued(ctx, alerts, await policy_move(ctx, "2025-06-18"))
    desk = build_channel("desk", alerts.channels["desk"], http)
    outcomes: list[MessageOutcome] = []
    dispatcher = Dispatcher(
        ctx.sessionmaker, {"desk": desk}, alerts, lambda: NOW, observers=[outcomes.append]
    )
    await dispatcher.run_once()
    [outcome] = [o for o in outcomes if o.channel == "desk"]
    return outcome


async def test_a_slack_bot_uploads_the_chart_and_the_message_shows_it(
    charted: tuple[Path, PollContext],
    slack_server: SlackWebhookServer,
    http: aiohttp.ClientSession,
) -> None:
    _, ctx = charted
    outcome = await dispatch_to_slack(ctx, slack_server, http)
    assert (outcome.status, outcome.chart_failures) == ("sent", 0)
    assert slack_server.api_methods() == [
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
        "chat.postMessage",
    ]
    calls = slack_server.api_calls
    assert all(c.authorized for c in calls if c.method != "upload")
    assert all(c.answer["ok"] for c in calls), [c.answer for c in calls]
    file_id = calls[0].answer["file_id"]
    assert Image.open(io.BytesIO(slack_server.uploads[file_id])).size == (800, 420)
    post = calls[-1].params
    assert post["channel"] == "C0KMONDESK"
    images = [b for b in post["blocks"] if b["type"] == "image"]
    assert [i["slack_file"]["id"] for i in images] == [file_id]
    assert "035420" in images[0]["alt_text"]
    assert "+15.25%" in post["text"]
    assert slack_server.received == []  # nothing through a webhook


async def test_a_failed_upload_still_sends_the_text_once(
    charted: tuple[Path, PollContext],
    slack_server: SlackWebhookServer,
    http: aiohttp.ClientSession,
) -> None:
    _, ctx = charted
    slack_server.fail_api("upload", 500)
    with capture_logs() as logs:
        outcome = await dispatch_to_slack(ctx, slack_server, http)
    assert (outcome.status, outcome.chart_failures) == ("sent", 1)
    assert slack_server.api_methods() == [
        "files.getUploadURLExternal",
        "upload",
        "chat.postMessage",
    ]
    post = slack_server.api_calls[-1]
    assert post.answer["ok"]
    assert [b for b in post.params["blocks"] if b["type"] == "image"] == []
    assert "+15.25%" in post.params["text"]
    failed = [e for e in logs if e["event"] == "chart_upload_failed"]
    assert len(failed) == 1 and BOT_TOKEN not in str(failed[0])


async def test_a_refused_upload_url_is_one_failure_too(
    charted: tuple[Path, PollContext],
    slack_server: SlackWebhookServer,
    http: aiohttp.ClientSession,
) -> None:
    _, ctx = charted
    slack_server.fail_api("files.getUploadURLExternal", "not_allowed_token_type")
    outcome = await dispatch_to_slack(ctx, slack_server, http)
    assert (outcome.status, outcome.chart_failures) == ("sent", 1)
    assert slack_server.api_methods() == ["files.getUploadURLExternal", "chat.postMessage"]


def test_a_webhook_channel_draws_no_chart(slack_server: SlackWebhookServer) -> None:
    config = SlackConfig.model_validate({"type": "slack", "webhook_url": slack_server.url})
    assert not shows_charts(SlackChannel("hook", config, None))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a channel"):
        SlackConfig.model_validate({"type": "slack", "token": BOT_TOKEN})
    with pytest.raises(ValueError, match="needs webhook_url, or token and channel"):
        SlackConfig.model_validate({"type": "slack"})


async def test_a_chart_past_its_time_leaves_the_alert_in_words(
    charted: tuple[Path, PollContext], smtp_starttls: SmtpServer
) -> None:
    _, ctx = charted
    alerts = AlertSettings.model_validate(
        {
            "channels": {"mail": smtp_starttls.email_config()},
            "routes": [
                {"name": "moves", "match": {"kinds": ["policy_move"]}, "channels": ["mail"]}
            ],
        }
    )
    await enqueued(ctx, alerts, await policy_move(ctx, "2025-06-18"))
    mail_channel = build_channel("mail", alerts.channels["mail"], None)  # type: ignore[arg-type]
    outcomes: list[MessageOutcome] = []
    dispatcher = Dispatcher(
        ctx.sessionmaker,
        {"mail": mail_channel},
        alerts,
        lambda: NOW,
        observers=[outcomes.append],
        chart_within=0.0,
    )
    with capture_logs() as logs:
        await dispatcher.run_once()
    [outcome] = [o for o in outcomes if o.channel == "mail"]
    assert (outcome.status, outcome.chart_failures) == ("sent", 1)
    assert [e["event"] for e in logs].count("chart_failed") == 1
    [delivery] = smtp_starttls.deliveries
    mail = delivery.message()
    assert not any(part.get_content_type() == "image/png" for part in mail.walk())
    plain = mail.get_body(preferencelist=("plain",))
    assert plain is not None and "+15.25%" in plain.get_content()
