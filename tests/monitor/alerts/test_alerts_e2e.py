"""Alerts end to end: a signal raised by the rules from a polled feed reaches a real
SMTP server (aiosmtpd, STARTTLS + AUTH) and the Slack webhook stand-in exactly once,
formatted and escaped, through 429/500/timeout on Slack and refused connections and
4xx replies on SMTP; ``kmon alerts`` shows the history and retries a dead letter; and
the real daemon killed with SIGKILL mid-send loses nothing after a restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from click.testing import CliRunner
from sqlalchemy import select

from monitor.alerts.dispatch import MessageOutcome
from monitor.cli.main import main
from monitor.config import Settings
from monitor.db.schema import Delivery, SignalRow
from monitor.service.daemon import open_runtime, poll_once
from tests.feeds import Entry, rss
from tests.monitor.alerts.outbox_support import FakeClock
from tests.monitor.alerts.slack_server import (
    HANG,
    WEBHOOK_SECRET,
    Received,
    SlackWebhookServer,
    links_in,
    rate_limited,
    refused,
    server_error,
)
from tests.monitor.alerts.smtp_server import USERNAME, SmtpServer
from tests.monitor.alerts.smtp_server import Delivery as Mail
from tests.servers import FakeSource

ITEM_BASE = "https://news.example.kr/article"

# Each headline fires the default rules (one news signal per story); a token of each
# tells which signal a Slack payload or a mail carries.
APPOINTMENT = "[속보] 대통령실 첫 AI미래기획수석에 하정우 네이버 AI센터장 임명"
# Slack's mention and link syntax; the feed reader strips what looks like an HTML tag
# (``<http://…|…>``), so the date-token form carries a spoofed link through it.
INJECTION = (
    "<!channel> 정부, 네이버와 소버린 AI <http://evil.example|공식 발표> & <@U123> "
    "<!date^1750000000^{date}^https://evil.example/login|네이버 공지> <!subteam^S1|@ops>"
)
HEADER_SMUGGLING = "카카오, 정부 GPU 확보 사업 참여\r\nBcc: victim@example.com"
TOKENS = {"appointment": "하정우", "injection": "소버린", "smuggling": "GPU"}
LATE = "과기정통부, 인공지능 기본법 시행령 입법예고"

RECIPIENTS = ("hong@example.kr", "ops@example.com")


def feed(now: datetime, *titles: str) -> bytes:
    """An RSS feed of ``titles``; the n-th is ``ITEM_BASE/n``, 5 + n minutes old."""
    return rss(
        [
            Entry(
                title=title,
                link=f"{ITEM_BASE}/{n}",
                guid=f"{ITEM_BASE}/{n}",
                published=now - timedelta(minutes=5 + n),
            )
            for n, title in enumerate(titles)
        ]
    )


class SmtpGate:
    """A port in front of the SMTP server that refuses connections (bound, not
    listening) until :meth:`open`, then forwards bytes both ways, so STARTTLS and AUTH
    happen end to end with the real server behind it."""

    def __init__(self, target: SmtpServer) -> None:
        self._target = target
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((target.host, 0))
        self.port: int = self._sock.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self._sock.listen()
        self._server = await asyncio.start_server(self._forward, sock=self._sock)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        else:
            self._sock.close()
        for task in self._pipes:
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self._target.host, self._target.port
            )
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            writer.close()
            self._pipes.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@pytest_asyncio.fixture
async def smtp_gate(smtp_starttls: SmtpServer) -> AsyncIterator[SmtpGate]:
    gate = SmtpGate(smtp_starttls)
    try:
        yield gate
    finally:
        await gate.close()


def _token(text: str) -> str:
    found = [name for name, token in TOKENS.items() if token in text]
    if LATE[:5] in text:
        found.append("late")
    assert len(found) == 1, text
    return found[0]


def _mrkdwn_texts(payload: dict[str, Any]) -> list[str]:
    texts = [payload["text"]]
    for block in payload["blocks"]:
        if block["type"] == "section":
            texts.append(block["text"]["text"])
        elif block["type"] == "context":
            texts.extend(e["text"] for e in block["elements"] if "text" in e)
    return texts


def _signal_of(received: Received) -> str:
    return _token(received.payload["text"])


def _mail_signal(mail: Mail) -> str:
    return _token(str(mail.message()["Subject"]))


async def _kmon_cli(config: Path, *args: str) -> Any:
    # The CLI runs its own event loop: off this one, in a thread.
    result = await asyncio.to_thread(
        CliRunner().invoke, main, ["--config", str(config), *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result


async def _listed(config: Path, *args: str) -> list[dict[str, Any]]:
    result = await _kmon_cli(config, "alerts", "list", "--format", "json", *args)
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


async def test_a_rule_signal_reaches_smtp_and_slack_once_through_every_fault(
    db_url: str,
    http_server: FakeSource,
    slack_server: SlackWebhookServer,
    smtp_starttls: SmtpServer,
    smtp_gate: SmtpGate,
    tmp_path: Path,
) -> None:
    # The CLI's retry uses the wall clock: the injected one starts there and only
    # moves forward, so a retried row is due for it.
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    start = clock()
    http_server.serve(
        "/policy.xml",
        feed(start, APPOINTMENT, INJECTION, HEADER_SMUGGLING),
    )
    settings = Settings(
        database={"url": db_url},
        quotes={"enabled": False},
        health={"enabled": False},
        sources=[{"name": "policy-wire", "url": http_server.url("/policy.xml"), "interval": 60}],
        alerts={
            "channels": {
                # A short timeout: the hanging request below fails in half a second.
                "slack": {"type": "slack", "webhook_url": slack_server.url, "timeout": 0.5},
                "email": smtp_starttls.email_config(port=smtp_gate.port),
            },
            "routes": [{"name": "everything", "channels": ["slack", "email"]}],
            # One signal per message, so that "each alert once" is one message each.
            "dispatch": {"backoff_base": 1, "backoff_max": 60, "max_per_message": 1},
        },
    )
    config = tmp_path / "kmon.yaml"
    config.write_text(f"database:\n  url: {db_url}\nsources: []\n", encoding="utf-8")

    slack_server.fail_next(rate_limited("30"), server_error(500), HANG)
    # Refused connections first (the gate is shut), then 421 and 451: all temporary.
    smtp_starttls.fail_next("MAIL", "421 4.7.0 Try again later")
    smtp_starttls.fail_next("DATA", "451 4.3.0 Temporary local problem")

    async with open_runtime(settings, clock=clock) as ctx:
        dispatcher = ctx.dispatcher
        assert dispatcher is not None
        seen: list[tuple[datetime, MessageOutcome]] = []
        dispatcher.observers.append(lambda outcome: seen.append((clock(), outcome)))

        [polled] = await poll_once(ctx)
        assert (polled.status, len(polled.new_item_ids)) == ("ok", 3)
        async with ctx.sessionmaker() as session:
            signals = list((await session.scalars(select(SignalRow))).all())
        assert sorted(_token(s.headline) for s in signals) == sorted(TOKENS)
        assert {s.kind for s in signals} == {"news"}

        # Round 1: Slack is rate-limited, the relay refuses the connection.
        next_due = await dispatcher.run_once()
        tried = [o for _, o in seen if o.status != "paused"]  # the rest wait their turn
        [limited, unreachable] = sorted(tried, key=lambda o: o.channel != "slack")
        assert (limited.status, limited.error_key) == ("retry", "http_429")
        assert limited.next_attempt_at == start + timedelta(seconds=30)
        assert (unreachable.status, unreachable.error_key) == ("retry", "smtp_connect")
        assert next_due is not None and next_due < start + timedelta(seconds=30)
        await smtp_gate.open()

        # Drive the rounds on the injected clock: to each next due time, but stop one
        # second short of the Retry-After once, to see that Slack is not asked early.
        probed = False
        for _ in range(20):
            if next_due is None:
                break
            if not probed and next_due >= start + timedelta(seconds=30):
                clock.now = start + timedelta(seconds=29)
                posts = len(slack_server.received)
                await dispatcher.run_once()
                assert len(slack_server.received) == posts == 1
                probed = True
            clock.now = max(clock.now, next_due)
            next_due = await dispatcher.run_once()
        assert next_due is None and probed

        # --- Slack: 429 → 500 → timeout → 200, then the other two -----------------
        assert [r.status for r in slack_server.received] == [429, 500, 0, 200, 200, 200]
        assert all(r.problems == () for r in slack_server.received)  # within the limits
        first = _signal_of(slack_server.received[0])
        assert [_signal_of(r) for r in slack_server.received[:4]] == [first] * 4
        delivered = [_signal_of(r) for r in slack_server.received if r.status == 200]
        assert sorted(delivered) == sorted(TOKENS)  # each signal once
        slack_times = [when for when, o in seen if o.channel == "slack" and o.status != "paused"]
        assert slack_times[1] >= slack_times[0] + timedelta(seconds=30)  # Retry-After kept
        slack_errors = [o.error_key for _, o in seen if o.channel == "slack" and o.error_key]
        assert slack_errors == ["http_429", "http_500", "timeout"]

        [injected] = [
            r.payload
            for r in slack_server.received
            if r.status == 200 and _signal_of(r) == "injection"
        ]
        texts = _mrkdwn_texts(injected)
        joined = "\n".join(texts)
        assert "&lt;!channel&gt;" in joined and "&lt;@U123&gt;" in joined
        assert "&lt;!date^1750000000^{date}^https://evil.example/login|네이버 공지&gt;" in joined
        assert "&lt;!subteam^S1|@ops&gt;" in joined and " &amp; " in joined
        for raw in ("<!channel>", "<@U123>", "<!date", "<!subteam"):
            assert raw not in joined
        # The only links are the item's own: a headline cannot point anywhere else.
        targets = {target for text in texts for target, _ in links_in(text)}
        assert targets == {f"{ITEM_BASE}/1"}
        sections = [b["text"] for b in injected["blocks"] if b["type"] == "section"]
        assert sections and all(t["verbatim"] is True for t in sections)  # no auto-parsing
        assert injected["unfurl_links"] is False

        # --- SMTP: refused → 421 → 451 → accepted, then the other two ---------------
        email_errors = [o.error_key for _, o in seen if o.channel == "email" and o.error_key]
        assert email_errors == ["smtp_connect", "smtp_421", "smtp_451"]
        mails = smtp_starttls.deliveries
        assert sorted(_mail_signal(m) for m in mails) == sorted(TOKENS)  # each once
        for mail in mails:
            parsed = mail.message()
            assert (mail.tls, mail.login, mail.mail_from) == (True, USERNAME, "kmon@example.kr")
            assert mail.rcpt_tos == RECIPIENTS
            assert [a.addr_spec for a in parsed["To"].addresses] == list(RECIPIENTS)
            assert parsed["Bcc"] is None and parsed["Cc"] is None
            assert not re.search(rb"^(bcc|cc):", mail.data, re.IGNORECASE | re.MULTILINE)
            assert "\n" not in str(parsed["Subject"])
        [smuggled] = [m.message() for m in mails if _mail_signal(m) == "smuggling"]
        assert str(smuggled["Subject"]).endswith(
            "카카오, 정부 GPU 확보 사업 참여 Bcc: victim@example.com"
        )
        assert len({m.message()["Message-ID"] for m in mails}) == 3

        # --- the outbox: every row sent, attempts counted ---------------------------
        async with ctx.sessionmaker() as session:
            rows = list((await session.scalars(select(Delivery).order_by(Delivery.id))).all())
        assert {(r.status, r.claimed_until) for r in rows} == {("sent", None)}
        attempts = {
            c: sorted(r.attempts for r in rows if r.channel == c) for c in ("slack", "email")
        }
        # The first message took every fault; the others waited without an attempt.
        assert attempts == {"slack": [1, 1, 4], "email": [1, 1, 4]}
        by_attempts = {(r.channel, r.attempts): r for r in rows}
        assert (by_attempts["slack", 4].last_error or "").startswith("timeout: ")
        assert (by_attempts["email", 4].last_error or "").startswith("smtp_451: ")
        assert {r.response for r in rows if r.channel == "slack"} == {"200 ok"}
        assert all((r.response or "").startswith("250 ") for r in rows if r.channel == "email")

        # --- `kmon alerts list` shows the history -----------------------------------
        history = await _listed(config)
        assert sorted((r["channel"], r["status"], r["attempts"]) for r in history) == [
            ("email", "sent", 1),
            ("email", "sent", 1),
            ("email", "sent", 4),
            ("slack", "sent", 1),
            ("slack", "sent", 1),
            ("slack", "sent", 4),
        ]
        assert {r["signal_id"] for r in history} == {s.id for s in signals}
        assert all(r["message_key"] and r["sent_at"] for r in history)
        assert await _listed(config, "--status", "dead") == []

        # --- a permanent refusal: dead with the reason, retried by hand ------------
        http_server.serve(
            "/policy.xml", feed(start, APPOINTMENT, INJECTION, HEADER_SMUGGLING, LATE)
        )
        [polled] = await poll_once(ctx, ["policy-wire"])
        assert len(polled.new_item_ids) == 1
        slack_server.fail_next(refused(404, "no_service"))
        posts, sent_mails = len(slack_server.received), len(mails)
        assert await dispatcher.run_once() is None  # nothing left to retry by itself
        [dead] = await _listed(config, "--status", "dead")
        assert (dead["channel"], dead["headline"]) == ("slack", LATE)
        assert dead["last_error"] == "http_404: slack webhook (127.0.0.1): HTTP 404 no_service"
        assert len(smtp_starttls.deliveries) == sent_mails + 1  # email went out all the same

        retried = await _kmon_cli(config, "alerts", "retry", "--dead")
        assert retried.output.strip() == "1 dead delivery → pending, due now"
        [pending] = await _listed(config, "--status", "pending")
        assert (pending["id"], pending["attempts"]) == (dead["id"], 0)
        assert await dispatcher.run_once() is None
        late_posts = slack_server.received[posts:]
        assert [(r.status, _signal_of(r)) for r in late_posts] == [(404, "late"), (200, "late")]
        assert await dispatcher.run_once() is None
        assert len(slack_server.received) == posts + 2  # delivered once, not again

    history = await _listed(config)
    assert len(history) == 8 and {r["status"] for r in history} == {"sent"}
    # The webhook's secret path never reaches what kmon stores or shows.
    assert WEBHOOK_SECRET not in json.dumps(history)


# --- the real daemon, killed mid-send ---------------------------------------------


async def _kmon(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _start_daemon(env: dict[str, str], stderr: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "run", "--migrate", env=env, stderr=stderr
    )


async def _stop(daemon: asyncio.subprocess.Process) -> None:
    if daemon.returncode is None:
        daemon.kill()
        await daemon.wait()


async def _sent_signals(daemon: asyncio.subprocess.Process, want: int) -> list[dict[str, Any]]:
    """Read the daemon's JSON log until ``want`` signals were reported sent."""
    assert daemon.stderr is not None
    sent: list[dict[str, Any]] = []
    while sum(int(line["signals"]) for line in sent) < want:
        raw = await daemon.stderr.readline()
        assert raw, "the daemon exited early"
        line = json.loads(raw)
        # The dispatcher's one line per message: channel, message key, status.
        if {"channel", "message"} <= line.keys() and line.get("status") == "sent":
            sent.append(line)
    return sent


@pytest.mark.e2e
async def test_a_daemon_killed_mid_send_loses_nothing_after_a_restart(
    db_url: str, http_server: FakeSource, slack_server: SlackWebhookServer, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    titles: Sequence[str] = (APPOINTMENT, INJECTION, HEADER_SMUGGLING)
    http_server.serve("/policy.xml", feed(now, *titles))
    config = tmp_path / "kmon.yaml"
    config.write_text(
        f"database:\n  url: {db_url}\n"
        "quotes: {enabled: false}\n"
        "health: {enabled: false}\n"
        "sources:\n"
        f"  - {{name: policy-wire, url: '{http_server.url('/policy.xml')}', interval: 60}}\n"
        "alerts:\n"
        "  channels:\n"
        f"    slack: {{type: slack, webhook_url: '{slack_server.url}', timeout: 10}}\n"
        # A short lease, so that the restarted daemon may resend within the test.
        "  dispatch: {lease: 2s, max_per_message: 1}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "KMON_CONFIG": str(config), "KMON_LOG_FORMAT": "json"}
    slack_server.fail_next(HANG)  # the first send never gets an answer

    with (tmp_path / "first.log").open("wb") as log:
        first = await _start_daemon(env, log)
        try:
            async with asyncio.timeout(20):
                [hung] = await slack_server.wait_for(1)
            os.kill(first.pid, signal.SIGKILL)  # mid-send: the POST is in flight
            assert await first.wait() == -signal.SIGKILL
        finally:
            await _stop(first)
    assert hung.status == 0 and hung.problems == ()
    code, out, err = await _kmon("alerts", "list", "--format", "json", env=env)
    assert code == 0, err
    assert sorted(r["status"] for r in json.loads(out)) == ["pending"] * 3

    second = await _start_daemon(env, asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(20):
            sent = await _sent_signals(second, want=3)
        second.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert second.stderr is not None
            await second.stderr.read()
            code = await second.wait()
    finally:
        await _stop(second)
    assert code == 0
    assert len(sent) == 3

    received = [_signal_of(r) for r in slack_server.received]
    assert all(r.problems == () for r in slack_server.received)
    # Nothing lost: every signal at least once; the one in flight at the kill once more.
    counts = {name: received.count(name) for name in TOKENS}
    assert counts == {name: 2 if name == _signal_of(hung) else 1 for name in TOKENS}
    answered = [_signal_of(r) for r in slack_server.received if r.status == 200]
    assert sorted(answered) == sorted(TOKENS)

    code, out, err = await _kmon("alerts", "list", "--format", "json", env=env)
    assert code == 0, err
    rows = json.loads(out)
    assert sorted((r["channel"], r["status"]) for r in rows) == [("slack", "sent")] * 3
    [resent] = [r for r in rows if _token(r["headline"]) == _signal_of(hung)]
    assert resent["attempts"] == 2  # claimed by the killed daemon, then after its lease
