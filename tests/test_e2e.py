"""The real ``kmon run`` process against a local feed server, stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.cli_process import kmon
from tests.feeds import entries, rss
from tests.servers import FakeSource

pytestmark = pytest.mark.e2e


async def test_run_poll_stop_and_query(
    db_url: str, http_server: FakeSource, tmp_path: Path
) -> None:
    http_server.serve("/ai.xml", rss(entries(5)), etag='"e1"')
    http_server.fail("/gone.xml", 404)
    config = tmp_path / "kmon.yaml"
    config.write_text(
        f"database:\n  url: {db_url}\n"
        "quotes:\n  enabled: false\n"  # no quote sources here: loopback feeds only
        "sources:\n"
        f"  - name: ai-news\n    url: {http_server.url('/ai.xml')}\n    interval: 2s\n"
        f"  - name: gone\n    url: {http_server.url('/gone.xml')}\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "KMON_CONFIG": str(config),
        "KMON_LOG_FORMAT": "json",
        # Health endpoints on a free port: 9108 may be taken by a kmon on this machine.
        "KMON_HEALTH__PORT": "0",
    }
    daemon = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        "run",
        "--migrate",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert daemon.stderr is not None
    polls: dict[str, list[dict[str, object]]] = {}
    lines: list[dict[str, object]] = []
    try:
        async with asyncio.timeout(60):
            # Wait for the feed's first poll and its conditional re-poll 2 s later.
            while len(polls.get("ai-news", [])) < 2 or "gone" not in polls:
                raw = await daemon.stderr.readline()
                assert raw, "the daemon exited early"
                line = json.loads(raw)
                lines.append(line)
                if line["event"] == "poll":
                    polls.setdefault(str(line["source"]), []).append(line)
        daemon.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest = await daemon.stderr.read()
            code = await daemon.wait()
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()

    assert code == 0
    stopped = [json.loads(x) for x in rest.decode().splitlines() if x.startswith("{")]
    assert stopped[-1]["event"] == "daemon_stopped"
    first, second = polls["ai-news"][:2]
    assert (first["status"], first["new_items"], first["http_status"]) == ("ok", 5, 200)
    assert (second["status"], second["new_items"], second["http_status"]) == (
        "not_modified",
        0,
        304,
    )
    assert (polls["gone"][0]["status"], polls["gone"][0]["level"]) == ("failed", "warning")
    # Every line is JSON with a UTC timestamp, a level and the run id.
    assert all(str(x["timestamp"]).endswith("Z") and x["run_id"] for x in lines)

    code, out, err = await kmon("items", "list", "--format", "json", env=env)
    assert code == 0, err
    titles = [item["title"] for item in json.loads(out)]
    assert titles == [f"네이버 하이퍼클로바X 소식 {n}" for n in range(5)]

    code, out, _ = await kmon("sources", "list", "--format", "json", env=env)
    status = {s["name"]: (s["status"], s["errors"]) for s in json.loads(out)}
    assert status == {"ai-news": ("ok", 0), "gone": ("failed", 1)}


async def test_run_refreshes_daily_bars_at_start(
    db_url: str, http_server: FakeSource, tmp_path: Path
) -> None:
    from datetime import date

    from aiohttp import web

    from monitor.db import quotes as quotes_repo
    from monitor.db.engine import make_engine, make_sessionmaker

    charts = Path(__file__).parent / "fixtures" / "quotes"

    async def fchart(request: web.Request) -> web.Response:
        name = {"035720": "naver_fchart_035720_euckr.xml", "KOSPI": "naver_fchart_KOSPI.xml"}
        return web.Response(body=(charts / name[request.query["symbol"]]).read_bytes())

    http_server.route("/sise.nhn", fchart)
    config = tmp_path / "kmon.yaml"
    config.write_text(
        f"database:\n  url: {db_url}\nsources: []\nhealth:\n  enabled: false\n"
        "quotes:\n"
        f"  naver_polling_url: {http_server.url('/realtime')}\n"
        f"  naver_chart_url: {http_server.url('/sise.nhn')}\n"
        f"  yahoo_chart_url: {http_server.url('/yahoo')}\n"
        "  tickers:\n"
        "    - {code: '035720', name_ko: 카카오, name_en: Kakao}\n"
        "    - {code: KOSPI, kind: index, name_ko: 코스피, name_en: KOSPI}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "KMON_CONFIG": str(config), "KMON_LOG_FORMAT": "json"}
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "run", "--migrate",
        env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert daemon.stderr is not None
    try:
        async with asyncio.timeout(60):
            while True:
                raw = await daemon.stderr.readline()
                assert raw, "the daemon exited early"
                line = json.loads(raw)
                if line["event"] == "bars":
                    break
        daemon.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await daemon.stderr.read()
            code = await daemon.wait()
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
    assert code == 0
    assert (line["stored"], line["tickers"]) == (10, 2)
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as session:
            kospi = await quotes_repo.bar_stats(session, "KOSPI", before=date(2025, 6, 18))
    finally:
        await engine.dispose()
    assert (kospi.prev_close, kospi.prev_day) == (2950.2, date(2025, 6, 17))
    assert (kospi.high_52w, kospi.low_52w) == (2955.1, 2880.7)
