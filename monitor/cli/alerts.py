"""``kmon alerts``: the outbox's deliveries, retries, and a test message per channel.

``list`` and ``retry`` work on the database only (the daemon picks retried rows up
within a minute, or at once when it next wakes); ``test`` builds the channel from
the settings and sends one message now, outside the outbox.

"""

from __future__ import annotations

import sys
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from monitor.alerts import STATUSES
from monitor.cli.common import ROW_ID, State, fail, format_option, query, run_async, when
from monitor.cli.output import Format, clip, render
from monitor.timefmt import kst, kst_iso, utcnow

if TYPE_CHECKING:
    from monitor.alerting import AlertSettings
    from monitor.alerts.message import AlertMessage
    from monitor.config import Settings


def alert_settings(settings: Settings) -> AlertSettings:
    """The ``alerts`` section of the settings (the built-in default when absent)."""
    from monitor.alerting import AlertSettings

    found = getattr(settings, "alerts", None)
    return found if isinstance(found, AlertSettings) else AlertSettings()


@click.group("alerts")
def alerts() -> None:
    """Alert deliveries: list them, retry them, test a channel."""


@alerts.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only deliveries in this state.")
@click.option("--since", callback=when, help="Created at or after (2d, 36h, 2025-06-18 …).")
@click.option("--channel", help="Only this channel.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@format_option
@click.pass_obj
def alerts_list(
    state: State,
    status: str | None,
    since: datetime | None,
    channel: str | None,
    limit: int,
    fmt: Format,
) -> None:
    """List deliveries, newest first.

    Status (pending shows why it waits), channel, route, attempts, the due or sent
    time and the last error; times in KST.
    """
    from monitor.alerts import admin

    rows = query(
        state,
        lambda session: admin.list_deliveries(
            session, status=status, since=since, channel=channel, limit=limit
        ),
    )
    full = [_record(delivery, signal) for delivery, signal in rows]
    table = [
        {
            "id": d.id,
            "created (KST)": kst(d.created_at),
            "status": d.status + (f" ({d.held})" if d.held and d.status == "pending" else ""),
            "channel": d.channel,
            "route": d.route,
            "tries": d.attempts,
            "due/sent (KST)": kst(d.sent_at if d.status == "sent" else d.due_at),
            "signal": clip(s.headline, 50),
            "last error": clip(d.last_error, 40),
        }
        for d, s in rows
    ]
    click.echo(render(full, fmt, table_rows=table))


def _record(delivery: Any, signal: Any) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "status": delivery.status,
        "held": delivery.held,
        "route": delivery.route,
        "channel": delivery.channel,
        "attempts": delivery.attempts,
        "created_at": kst_iso(delivery.created_at),
        "due_at": kst_iso(delivery.due_at),
        "last_attempt_at": kst_iso(delivery.last_attempt_at),
        "sent_at": kst_iso(delivery.sent_at),
        "claimed_until": kst_iso(delivery.claimed_until),
        "message_key": delivery.message_key,
        "response": delivery.response,
        "last_error": delivery.last_error,
        "signal_id": signal.id,
        "kind": signal.kind,
        "rule_id": signal.rule_id,
        "severity": signal.severity,
        "subject": signal.subject,
        "headline": signal.headline,
        "event_time": kst_iso(signal.event_time),
    }


@alerts.command("retry")
@click.argument("delivery_id", type=ROW_ID, required=False)
@click.option("--dead", "all_dead", is_flag=True, help="Every dead delivery.")
@click.option("--channel", help="With --dead: only this channel's.")
@click.pass_obj
def alerts_retry(
    state: State, delivery_id: int | None, all_dead: bool, channel: str | None
) -> None:
    """Retry a delivery (ID), or every dead one (--dead).

    The rows become pending and due now, with a fresh attempt budget; the last error
    stays until the next attempt. A running daemon sends them within a minute.
    """
    from monitor.alerts import admin

    if (delivery_id is None) == (not all_dead):
        raise click.UsageError("give a delivery ID or --dead (not both)")
    if channel is not None and not all_dead:
        raise click.UsageError("--channel goes with --dead")
    now = utcnow()
    if delivery_id is not None:
        wanted = delivery_id

        async def one(session: Any) -> str | None:
            async with session.begin():
                return await admin.retry(session, wanted, now=now)

        before = query(state, one)
        if before is None:
            fail(f"no delivery with id {delivery_id}")
        click.echo(f"delivery {delivery_id}: {before} → pending, due now")
        return

    async def dead(session: Any) -> int:
        async with session.begin():
            return await admin.retry_dead(session, now=now, channel=channel)

    count = query(state, dead)
    click.echo(f"{count} dead deliver{'y' if count == 1 else 'ies'} → pending, due now")


def sample_message(now: datetime) -> AlertMessage:
    """What ``kmon alerts test`` sends: one harmless sample signal, marked as a test."""
    from monitor.alerts.message import AlertMessage, AlertSignal

    sample = AlertSignal(
        id=0,
        kind="news",
        rule_id="kmon-test",
        severity="info",
        subject="kmon",
        title="kmon test message: this channel works",
        event_time=now,
        why="sent by `kmon alerts test`",
    )
    return AlertMessage(
        key=f"kmon-test-{uuid.uuid4().hex[:16]}",
        route="test",
        signals=(sample,),
        test=True,
        created_at=now,
    )


@alerts.command("test")
@click.argument("channel")
@click.pass_obj
def alerts_test(state: State, channel: str) -> None:
    """Send a test message to CHANNEL.

    Prints the server's answer, or the error; exit status 1 when the channel refused
    the message or could not be reached.
    """
    from adapters.errors import PermanentError, TransientError
    from adapters.http import USER_AGENT, make_client_session
    from monitor.alerts.channels import build_channel

    settings = state.settings
    configured = alert_settings(settings).channels
    config = configured.get(channel)
    if config is None:
        names = ", ".join(sorted(configured)) or "none"
        fail(f"no channel named {channel!r} (configured: {names})", code=2)

    async def send() -> tuple[bool, list[str]]:
        user_agent = settings.http.user_agent or USER_AGENT
        async with make_client_session(user_agent=user_agent) as http:
            target = build_channel(channel, config, http)
            try:
                sent = await target.send(sample_message(utcnow()))
            except TransientError as exc:
                wait = f", retry after {exc.retry_after:g}s" if exc.retry_after else ""
                return False, [f"{channel}: failed (transient{wait}): {exc.key}: {exc}"]
            except PermanentError as exc:
                return False, [f"{channel}: failed (permanent): {exc.key}: {exc}"]
            finally:
                await target.close()
        lines = [f"{channel}: sent: {sent.detail}"]
        lines.extend(f"  {key}: {value}" for key, value in sent.extra.items())
        return True, lines

    ok, lines = run_async(send)
    for line in lines:
        click.echo(line)
    if not ok:
        sys.exit(1)
