"""Metrics as a scraper sees them: quote cycles, and the stored state read per scrape."""

from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.records import Validators
from monitor.alerting import AlertSettings
from monitor.alerts.outbox import enqueue
from monitor.config import SourceConfig
from monitor.db import repo
from monitor.db.engine import make_engine, make_sessionmaker
from monitor.db.schema import Delivery
from monitor.ingest.quotes import QuoteCycle
from monitor.service.metrics import Metrics
from tests.monitor.alerts.outbox_support import signal_row
from tests.monitor.alerts.smtp_server import refused_port

SM = async_sessionmaker[AsyncSession]


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_quote_cycles_move_the_quote_counters() -> None:
    metrics = Metrics()
    before = scrape(metrics)
    assert before[("kmon_quote_cycles_total", (("outcome", "partial"),))] == 0
    metrics.observe_quotes(
        QuoteCycle(stored=3, served_by={"naver": 2, "yahoo": 1}, rejected=[("x", "why")])
    )
    metrics.observe_quotes(QuoteCycle(stored=0, served_by={"yahoo": 2}, missing=["KOSPI"]))
    after = scrape(metrics)
    assert after[("kmon_quotes_served_total", (("source", "naver"),))] == 2
    assert after[("kmon_quotes_served_total", (("source", "yahoo"),))] == 3
    assert after[("kmon_quotes_stored_total", ())] == 3
    assert after[("kmon_quotes_rejected_total", ())] == 1
    assert after[("kmon_quote_cycles_total", (("outcome", "complete"),))] == 1
    assert after[("kmon_quote_cycles_total", (("outcome", "partial"),))] == 1


async def test_stored_state_is_read_when_scraped(sessionmaker: SM) -> None:
    """Source statuses, signals by kind and rule, and the outbox per channel, as the
    database has them, whichever process wrote them."""
    now = datetime.now(UTC)
    configs = [SourceConfig(name=n, url=f"https://{n}.example.kr/rss") for n in ("a", "b", "c")]
    alerts = AlertSettings.model_validate({"channels": {"desk": {"type": "console"}}})
    async with sessionmaker.begin() as session:
        await repo.sync_sources(session, configs, now=now)
        ids = {s.name: s.id for s in await repo.load_sources(session)}
        await repo.record_success(
            session, ids["a"], now=now, validators=Validators(), next_check_at=now
        )
        await repo.record_failure(
            session, ids["b"], now=now, status="auth_failed", error="http_401: x", next_check_at=now
        )
        old = signal_row(rule_id="ai-policy", created_at=now - timedelta(minutes=30))
        new = signal_row(kind="move", rule_id="big-move", tickers=("035420",))
        session.add_all([old, new])
        await session.flush()
        await enqueue(session, [old], alerts, now=now - timedelta(minutes=30))
        await enqueue(session, [new], alerts, now=now)
        await session.execute(
            update(Delivery).where(Delivery.signal_id == new.id).values(status="dead")
        )
    metrics = Metrics()
    await metrics.refresh(sessionmaker)
    got = scrape(metrics)
    status = {
        (dict(labels)["source"], dict(labels)["status"]): value
        for (name, labels), value in got.items()
        if name == "kmon_source_status"
    }
    assert {key for key, value in status.items() if value == 1} == {
        ("a", "ok"),
        ("b", "auth_failed"),
        ("c", "new"),
    }
    assert len(status) == 3 * 5  # every status word, 0 for all but the current one
    assert got[("kmon_signals_total", (("kind", "news"), ("rule", "ai-policy")))] == 1
    assert got[("kmon_signals_total", (("kind", "move"), ("rule", "big-move")))] == 1
    assert got[("kmon_outbox_pending", (("channel", "desk"),))] == 1
    assert got[("kmon_outbox_dead", (("channel", "desk"),))] == 1
    age = got[("kmon_outbox_oldest_pending_age_seconds", (("channel", "desk"),))]
    assert 30 * 60 <= age < 31 * 60
    assert got[("kmon_metrics_database_up", ())] == 1


async def test_an_unreachable_database_keeps_the_last_reading() -> None:
    metrics = Metrics()
    metrics.stored.sources = {"a": "ok"}
    metrics.stored.database_up = True
    with refused_port() as port:
        engine = make_engine(f"postgresql+asyncpg://kmon@127.0.0.1:{port}/kmon")
        try:
            await metrics.refresh(make_sessionmaker(engine))
        finally:
            await engine.dispose()
    got = scrape(metrics)
    assert got[("kmon_metrics_database_up", ())] == 0
    assert got[("kmon_source_status", (("source", "a"), ("status", "ok")))] == 1
