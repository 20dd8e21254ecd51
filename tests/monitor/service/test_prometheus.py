"""A real Prometheus scraping a real ``kmon run``, with kmon's own alerting rules.

The daemon polls loopback feeds: one healthy, one gone (404), one behind a paywall
(401), one that answered once and then broke (500). An alert written an hour ago waits
for a Slack channel that refuses connections. Prometheus (Debian's package) scrapes
every second and evaluates ``deploy/prometheus/kmon-rules.yml`` unchanged; the test
reads its HTTP API until the alerts are pending where they should be, and checks that
the healthy source raises none. The rules' ``for:`` durations are minutes, so the
alerts stay pending: pending is what the rules' expressions are tested by.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from monitor.alerting import AlertSettings
from monitor.alerts.outbox import enqueue
from monitor.db import migrate
from monitor.db.engine import make_engine, make_sessionmaker
from tests.feeds import entries, rss
from tests.monitor.alerts.outbox_support import signal_row
from tests.monitor.alerts.smtp_server import refused_port
from tests.servers import FakeSource, Reply

PROMETHEUS = shutil.which("prometheus")
RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "kmon-rules.yml"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        PROMETHEUS is None, reason="prometheus is not installed (Debian package prometheus)"
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def seed_backlog(db_url: str, alerts: AlertSettings) -> None:
    """The schema, and one signal whose delivery has waited for an hour."""
    engine = make_engine(db_url)
    try:
        await migrate.upgrade(engine)
        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        async with make_sessionmaker(engine).begin() as session:
            row = signal_row(event_time=an_hour_ago)
            session.add(row)
            await session.flush()
            assert await enqueue(session, [row], alerts, now=an_hour_ago) == 1
    finally:
        await engine.dispose()


async def alerts_of(http: aiohttp.ClientSession, base: str) -> dict[tuple[str, str], str]:
    """Prometheus's alerts: (alert name, source or channel) → state."""
    async with http.get(f"{base}/api/v1/alerts") as resp:
        body = await resp.json()
    return {
        (a["labels"]["alertname"], a["labels"].get("source") or a["labels"].get("channel", "")): a[
            "state"
        ]
        for a in body["data"]["alerts"]
    }


async def query(
    http: aiohttp.ClientSession, base: str, expr: str
) -> list[tuple[dict[str, str], float]]:
    """An instant query's answer: each series' labels and value."""
    async with http.get(f"{base}/api/v1/query", params={"query": expr}) as resp:
        body = await resp.json()
    assert body["status"] == "success", body
    return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]


async def rule_health(http: aiohttp.ClientSession, base: str) -> dict[str, str]:
    """Each loaded rule's health: ok, or the error of its last evaluation."""
    async with http.get(f"{base}/api/v1/rules") as resp:
        body = await resp.json()
    return {
        rule["name"]: rule["health"] if rule["health"] == "ok" else rule.get("lastError", "")
        for group in body["data"]["groups"]
        for rule in group["rules"]
    }


async def test_prometheus_sees_failed_stale_and_backlog_alerts(
    db_url: str, http_server: FakeSource, tmp_path: Path
) -> None:
    http_server.serve("/ok.xml", rss(entries(3)))
    http_server.fail("/gone.xml", 404)
    http_server.fail("/paywall.xml", 401)
    http_server.sequence("/flaky.xml", [Reply(rss(entries(2))), Reply(status=500)])
    with refused_port() as dead_port:
        channels = {"desk": {"type": "slack", "webhook_url": f"http://127.0.0.1:{dead_port}/h"}}
        alerts = AlertSettings.model_validate({"channels": channels})
        await seed_backlog(db_url, alerts)
        kmon_port, prom_port = free_port(), free_port()
        config = tmp_path / "kmon.yaml"
        config.write_text(
            f"database:\n  url: {db_url}\n"
            "quotes:\n  enabled: false\n"
            f"alerts:\n  channels: {json.dumps(channels)}\n"
            "sources:\n"
            f"  - name: healthy\n    url: {http_server.url('/ok.xml')}\n    interval: 1s\n"
            f"  - name: gone\n    url: {http_server.url('/gone.xml')}\n"
            f"  - name: paywalled\n    url: {http_server.url('/paywall.xml')}\n"
            f"  - name: flaky\n    url: {http_server.url('/flaky.xml')}\n    interval: 1s\n",
            encoding="utf-8",
        )
        prom_log = tmp_path / "prometheus.log"
        prom_config = tmp_path / "prometheus.yml"
        prom_config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files: [{json.dumps(str(RULES))}]\n"
            "scrape_configs:\n  - job_name: kmon\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{kmon_port}']}}]\n",
            encoding="utf-8",
        )
        env = {
            **os.environ,
            "KMON_CONFIG": str(config),
            "KMON_LOG_FORMAT": "json",
            "KMON_HEALTH__PORT": str(kmon_port),
        }
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "run", env=env, stderr=asyncio.subprocess.DEVNULL
        )
        assert PROMETHEUS is not None
        prometheus = await asyncio.create_subprocess_exec(
            PROMETHEUS,
            f"--config.file={prom_config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=prom_log.open("wb"),
        )
        base = f"http://127.0.0.1:{prom_port}"
        wanted = {
            ("KmonSourceFailed", "gone"),
            ("KmonSourceAuthFailed", "paywalled"),
            ("KmonSourceStale", "flaky"),
            ("KmonOutboxBacklog", "desk"),
        }
        seen: dict[tuple[str, str], str] = {}
        try:
            async with aiohttp.ClientSession() as http:
                try:
                    async with asyncio.timeout(90):
                        while not wanted <= seen.keys():
                            try:
                                seen = await alerts_of(http, base)
                            except aiohttp.ClientError:
                                seen = {}  # Prometheus still starting
                            if not wanted <= seen.keys():
                                # Prometheus offers no event to await: it evaluates once
                                # a second, so its API is asked again after half a round.
                                await asyncio.sleep(0.5)
                except TimeoutError:
                    tail = prom_log.read_text(errors="replace").splitlines()[-20:]
                    pytest.fail(f"alerts seen: {seen}; Prometheus said:\n" + "\n".join(tail))
                # Every rule evaluated without an error, and what they saw, by query.
                health = await rule_health(http, base)
                status = await query(http, base, "kmon_source_status == 1")
                pending = await query(http, base, "kmon_outbox_pending")
                scraped = await query(http, base, 'up{job="kmon"}')
        finally:
            for proc in (prometheus, daemon):
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in (prometheus, daemon):
                await asyncio.wait_for(proc.wait(), timeout=30)
    assert {seen[key] for key in wanted} == {"pending"}  # the rules' for: is minutes
    assert health and set(health.values()) == {"ok"}, health
    assert [value for _, value in scraped] == [1.0]
    current = {labels["source"]: labels["status"] for labels, _ in status}
    assert (current["gone"], current["paywalled"], current["healthy"]) == (
        "failed",
        "auth_failed",
        "ok",
    )
    [(labels, waiting)] = pending
    assert labels["channel"] == "desk" and waiting >= 1
    # The healthy source raises nothing, and nothing is dead-lettered.
    assert not [key for key in seen if key[1] == "healthy"]
    assert not [key for key in seen if key[0] in ("KmonDeadLetters", "KmonDown")]
