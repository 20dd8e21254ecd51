"""End to end: kmon polls a loopback farm of RSS feeds (fetch → parse → dedup → store).

Run: .venv/bin/python bench/feed_farm.py  (prints figures; not a test)

A separate process serves ``--feeds`` RSS feeds of ``--items`` Korean items each on
127.0.0.1 with aiohttp; every feed has an ETag and answers 304 to a matching
If-None-Match. For each database, a fresh kmon process (spawned, so that its peak RSS
is its own) runs ``--runs`` times: a new database migrated by ``open_runtime``, a first
``poll_once`` over all sources (every item is new), then a second ``poll_once`` naming
every source, which every feed answers with 304. Medians are printed. The server stops
by itself after ``--lifetime`` seconds or when this script exits.

The PostgreSQL database named by ``--pg-url`` is dropped and created for every run and
dropped at the end; its name must contain "bench". An unreachable server skips
PostgreSQL with one line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.engine import make_url

from bench.scratch_db import databases, fresh_postgres

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/kmon_bench"
HOST = "127.0.0.1"

# ----------------------------------------------------------------- the feed farm

_ORGS = (
    "과학기술정보통신부",
    "삼성전자",
    "SK하이닉스",
    "네이버",
    "카카오",
    "LG에너지솔루션",
    "현대자동차",
    "한국은행",
    "금융위원회",
    "서울시",
    "국토교통부",
    "산업통상자원부",
)
_TOPICS = (
    "AI 반도체",
    "하이퍼클로바X",
    "소버린 AI",
    "2차전지",
    "기준금리",
    "전세 사기",
    "K-칩스법",
    "원·달러 환율",
    "수출 실적",
    "데이터센터",
    "전기차 보조금",
    "청년 일자리",
)
_VERBS = ("발표", "확대", "추진", "검토", "합의", "철회", "강화", "연기")
_TAGS = ("[속보]", "[단독]", "[종합]", "", "", "")


def _entries(feed: int, count: int, base: datetime, topical: float | None) -> list[Any]:
    """``count`` entries with distinct guids, dates spread over two days.

    ``topical`` None: the one-template Korean headlines of the earlier figures (about a
    third on topic, near-duplicates of each other); a share in 0..1: that share of
    on-topic policy news, the rest everyday news (bench/farm_text.py).
    """
    from bench.farm_text import news_text
    from tests.feeds import Entry

    rng = random.Random(feed)
    out = []
    for i in range(count):
        article = feed * 100_000 + i
        if topical is None:
            title, description = _legacy_text(rng, article)
        else:
            text = news_text(rng, rng.random() < topical, article)
            title, description = text.title, text.description
        published = base - timedelta(seconds=rng.randint(0, 2 * 86400))
        url = f"https://news{feed % 40}.example.kr/article/{article}"
        out.append(
            Entry(
                title=title,
                link=f"{url}?utm_source=rss&utm_medium=feed",
                guid=url,
                published=published,
                description=description,
            )
        )
    return out


def _legacy_text(rng: random.Random, article: int) -> tuple[str, str]:
    org, topic, verb = rng.choice(_ORGS), rng.choice(_TOPICS), rng.choice(_VERBS)
    tag = rng.choice(_TAGS)
    amount = rng.randint(1, 99)
    title = f'{tag} {org}, {topic} {amount}조원 지원 {verb}…"시장 영향 주목"'.strip()
    description = (
        f"<p>{org}는 {rng.randint(1, 28)}일 <b>{topic}</b> 관련 대책을 {verb}했다고 "
        f"밝혔다.&nbsp;업계는 &quot;환영&quot;한다는 입장이지만 일부에서는 "
        f"실효성에 의문을 제기했다.</p><p>정부는 {amount}조원 규모의 예산을 "
        f"투입해 {topic} 경쟁력을 높이겠다는 계획이다. "
        f"<a href='https://news.example.kr/tag/{article % 97}'>관련 기사</a></p>"
        f'<img src="https://img.example.kr/{article}.jpg">'
    )
    return title, description


def build_farm(feeds: int, items: int, topical: float | None) -> list[tuple[bytes, str]]:
    """(body, ETag) of each feed; RSS 2.0 with ``+0900`` dates (see tests/feeds.py)."""
    from tests.feeds import rss

    base = datetime(2026, 10, 5, 3, 0, tzinfo=UTC)
    return [(rss(_entries(n, items, base, topical)), f'"farm-{n}-v1"') for n in range(feeds)]


def farm_name(topical: float | None) -> str:
    return "legacy" if topical is None else f"t{round(topical * 100)}"


def serve_farm(
    conn: Connection, feeds: int, items: int, shares: list[float | None], lifetime: float
) -> None:
    """Child process: serve one farm per share on 127.0.0.1 (``/t10/feed/7.xml``), send
    the port and the bytes of each farm, stop when told or due."""
    from aiohttp import web

    from bench.loopback import serve_until_told

    farms = {farm_name(share): build_farm(feeds, items, share) for share in shares}

    async def feed(request: web.Request) -> web.StreamResponse:
        farm = farms.get(request.match_info["farm"])
        n = int(request.match_info["n"])
        if farm is None or not 0 <= n < len(farm):
            return web.Response(status=404)
        body, etag = farm[n]
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(
            body=body,
            headers={"ETag": etag, "Content-Type": "application/rss+xml; charset=utf-8"},
        )

    app = web.Application()
    app.router.add_get("/{farm}/feed/{n}.xml", feed)
    sizes = {name: sum(len(b) for b, _ in farm) for name, farm in farms.items()}
    serve_until_told(app, conn, lifetime, backlog=4096, announce=lambda port: (port, sizes))


def feed_url(port: int, share: float | None, n: int) -> str:
    return f"http://{HOST}:{port}/{farm_name(share)}/feed/{n}.xml"


# ------------------------------------------------------------------ the kmon side


@dataclass(frozen=True)
class RunFigures:
    items: int
    first_cycle: float
    first_cpu: float
    first_loop_cpu: float
    not_modified_cycle: float
    not_modified_cpu: float
    signals: int = 0


def _cpu() -> float:
    """CPU seconds (user + system, all threads) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _one_run(db_url: str, port: int, args: argparse.Namespace) -> RunFigures:
    from monitor.config import DatabaseSettings, HttpSettings, Settings, SourceConfig
    from monitor.service.daemon import open_runtime, poll_once

    names = [f"farm-{n:04d}" for n in range(args.feeds)]
    # Burst mode polls only the news sources; quote polling is off all the same, so
    # that nothing but the farm on 127.0.0.1 is ever asked.
    extra: dict[str, Any] = (
        {"quotes": {"enabled": False}} if "quotes" in Settings.model_fields else {}
    )
    if "rules" in Settings.model_fields:
        extra["rules"] = {"enabled": not args.no_rules}
    settings = Settings(
        database=DatabaseSettings(url=db_url),
        http=HttpSettings(per_host_limit=args.per_host_limit),
        log_format="json",
        sources=[
            SourceConfig(name=name, url=feed_url(port, args.topical, n), interval=600)
            for n, name in enumerate(names)
        ],
        **extra,
    )
    async with open_runtime(settings, migrate_schema=True) as ctx:
        started, cpu, loop_cpu = time.perf_counter(), _cpu(), time.thread_time()
        first = await poll_once(ctx)
        first_wall, first_cpu = time.perf_counter() - started, _cpu() - cpu
        first_loop_cpu = time.thread_time() - loop_cpu
        if len(first) != args.feeds or any(o.status != "ok" for o in first):
            bad = [o for o in first if o.status != "ok"][:3]
            raise SystemExit(f"first cycle: {len(first)} polls, not all ok: {bad}")
        new = sum(len(o.new_item_ids) for o in first)
        if new != args.feeds * args.items:
            raise SystemExit(f"first cycle stored {new} items, expected {args.feeds * args.items}")
        signals = await _count_signals(ctx)

        started, cpu = time.perf_counter(), _cpu()
        second = await poll_once(ctx, names)
        second_wall, second_cpu = time.perf_counter() - started, _cpu() - cpu
        if len(second) != args.feeds or any(o.status != "not_modified" for o in second):
            bad = [o for o in second if o.status != "not_modified"][:3]
            raise SystemExit(f"second cycle: not every feed answered 304: {bad}")
    return RunFigures(new, first_wall, first_cpu, first_loop_cpu, second_wall, second_cpu, signals)


async def _count_signals(ctx: Any) -> int:
    from sqlalchemy import func, select

    try:
        from monitor.db.schema import SignalRow
    except ImportError:  # a version before the rules
        return 0
    async with ctx.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(SignalRow)) or 0)


def kmon_side(conn: Connection, backend: str, db_url: str, port: int, args: Any) -> None:
    """Child process: the daemon's side only, so that ru_maxrss is the daemon's."""
    # Settings gives KMON_* variables precedence over arguments: none of the machine's
    # configuration (a real database URL above all) may leak into the benchmark.
    for name in [n for n in os.environ if n.startswith("KMON_")]:
        del os.environ[name]
    from monitor.logs import configure_logging

    async def one(run: int, tmp: Path) -> RunFigures:
        if backend == "sqlite":
            return await _one_run(f"sqlite+aiosqlite:///{tmp / f'run{run}.db'}", port, args)
        await fresh_postgres(db_url)
        return await _one_run(db_url, port, args)

    runs: list[RunFigures] = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="kmon-farm-") as tmp,
            # JSON lines to a real file, as a daemon under systemd would write them.
            open(Path(tmp) / "kmon.log", "w", encoding="utf-8") as log,
        ):
            configure_logging("json", "INFO", stream=log)
            try:
                for run in range(args.runs):
                    runs.append(asyncio.run(one(run, Path(tmp))))
                    for leftover in Path(tmp).glob(f"run{run}.db*"):
                        leftover.unlink()
            finally:
                if backend == "postgresql":
                    asyncio.run(fresh_postgres(db_url, drop_only=True))
            log.flush()
            with open(log.name, encoding="utf-8") as lines:
                polls = sum('"event": "poll"' in line for line in lines)
            if polls != 2 * args.runs * args.feeds:
                raise SystemExit(f"expected one log line per poll, found {polls}")
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    # Linux reports ru_maxrss in KiB.
    conn.send(("ok", (runs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))


def _run_child(target: Any, *args: Any) -> Any:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=target, args=(theirs, *args), daemon=True)
    proc.start()
    try:
        status, payload = ours.recv()
    except EOFError:
        raise SystemExit(f"{target.__name__} died (exit code {proc.exitcode})") from None
    finally:
        proc.join(timeout=30)
    if status != "ok":
        raise SystemExit(payload)
    return payload


# ------------------------------------------------------- whole processes: kmon poll


@dataclass(frozen=True)
class ProcessFigures:
    """One child process: wall seconds (start-up included), CPU seconds, peak RSS (MB)."""

    wall: float
    cpu: float
    rss_mb: float
    items: int  # new items it stored (kmon) or delivered (rss2email)


def run_process(argv: list[str], env: dict[str, str], log: Path) -> tuple[ProcessFigures, str]:
    """Run ``argv`` to its end: its figures (``wait4``'s rusage is the child's own) and
    its standard output; standard error goes to ``log``."""
    with open(log, "ab") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout.read() if proc.stdout else b""
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        lines = out.decode(errors="replace").splitlines()
        bad = [line for line in lines if ": ok (" not in line and ": not_modified (" not in line]
        tail = log.read_text(errors="replace").splitlines()[-3:]
        raise SystemExit(
            f"{' '.join(argv[:4])} … exited {proc.returncode}; {len(bad)} of {len(lines)} "
            "lines not ok: " + "\n".join([*bad[:5], *tail])
        )
    # Linux reports ru_maxrss in KiB.
    figures = ProcessFigures(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, 0)
    return figures, out.decode()


def kmon_config(path: Path, db_url: str, port: int, share: float, args: Any, rules: bool) -> None:
    """A kmon.yaml naming the farm's feeds (JSON is YAML): quotes off, alerts as built in
    (the console channel, log lines), one source per feed."""
    database: dict[str, Any] = {"url": db_url}
    in_flight = args.per_host_limit
    if db_url.startswith("postgresql"):
        # No more polls in flight than the pool has connections (pool_size and as many
        # again of overflow): a poll holds its connection from fetch to commit, and one
        # that waits for a connection past the pool's 30 s fails.
        database["pool_size"] = args.pg_pool_size
        in_flight = min(in_flight, 2 * args.pg_pool_size)
    config = {
        "database": database,
        "http": {"per_host_limit": in_flight}
        | ({"parse_workers": args.parse_workers} if args.parse_workers else {}),
        "log_format": "json",
        "quotes": {"enabled": False},
        "rules": {"enabled": rules},
        "sources": [
            {"name": f"farm-{n:04d}", "url": feed_url(port, share, n), "interval": 600}
            for n in range(args.feeds)
        ],
    }
    path.write_text(json.dumps(config), encoding="utf-8")


def _new_items(out: str, args: Any, status: str) -> int:
    """New items of a ``kmon poll``'s lines (``farm-0001: ok (50 new)``), every feed checked."""
    lines = [line for line in out.splitlines() if line.startswith("farm-")]
    wrong = [line for line in lines if f": {status} (" not in line]
    if len(lines) != args.feeds or wrong:
        raise SystemExit(f"kmon poll: {len(lines)} polls, not all {status}: {wrong[:3]}")
    return sum(int(line.rsplit("(", 1)[1].split()[0]) for line in lines)


def kmon_cycles(
    scratch: Path,
    backend: str,
    pg_url: str,
    port: int,
    share: float,
    rules: bool,
    args: Any,
    *,
    unchanged_cycle: bool | None = None,
) -> tuple[ProcessFigures, ProcessFigures | None]:
    """``kmon poll --migrate`` over a new database (every item new), then, with
    ``unchanged_cycle`` (by default: with rules on), ``kmon poll`` naming every feed
    (every feed answers 304): the two processes' figures."""
    if backend == "sqlite":
        db = scratch / "kmon.db"
        for leftover in scratch.glob("kmon.db*"):
            leftover.unlink()
        db_url = f"sqlite+aiosqlite:///{db}"
    else:
        asyncio.run(fresh_postgres(pg_url))
        db_url = pg_url
    config = scratch / "kmon.yaml"
    kmon_config(config, db_url, port, share, args, rules)
    # Settings gives KMON_* variables precedence over the file: none of the machine's
    # configuration (a real database URL above all) may leak into the benchmark.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMON_")}
    kmon = [sys.executable, "-m", "monitor", "--config", str(config), "poll"]
    log = scratch / "kmon.log"
    first, out = run_process([*kmon, "--migrate"], env, log)
    first = ProcessFigures(first.wall, first.cpu, first.rss_mb, _new_items(out, args, "ok"))
    if first.items != args.feeds * args.items:
        raise SystemExit(f"first cycle stored {first.items}, expected {args.feeds * args.items}")
    unchanged = None
    if rules if unchanged_cycle is None else unchanged_cycle:
        names = [f"farm-{n:04d}" for n in range(args.feeds)]
        unchanged, out = run_process([*kmon, *names], env, log)
        _new_items(out, args, "not_modified")
    return first, unchanged


# ----------------------------------------------------------------- the peer: rss2email

RSS2EMAIL = "rss2email==3.14"


def rss2email_command(venv: Path) -> Path:
    """``r2e`` of a scratch virtualenv holding rss2email 3.14, made on first use."""
    r2e = venv / "bin" / "r2e"
    if not r2e.exists():
        print(f"installing {RSS2EMAIL} into {venv} …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", RSS2EMAIL], check=True
        )
    return r2e


def rss2email_config(path: Path, maildir: Path, port: int, share: float, args: Any) -> None:
    """rss2email's config for the farm: every entry a message in a local maildir, no
    pause between feeds of one server (all of them are on 127.0.0.1)."""
    lines = [
        "[DEFAULT]",
        "from = bench@localhost",
        "to = desk@localhost",
        "email-protocol = maildir",
        f"maildir-path = {maildir}",
        "maildir-mailbox = INBOX",
        "same-server-fetch-interval = 0",
        "",
    ]
    for n in range(args.feeds):
        lines += [f"[feed.farm-{n:04d}]", f"url = {feed_url(port, share, n)}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def rss2email_cycles(
    scratch: Path, r2e: Path, port: int, share: float, args: Any
) -> tuple[ProcessFigures, ProcessFigures]:
    """``r2e run`` on a new feed database (every entry mailed), then ``r2e run`` again
    (every feed answers 304)."""
    maildir = scratch / "mail"
    shutil.rmtree(maildir, ignore_errors=True)
    maildir.mkdir()  # rss2email makes the mailbox, not the folder it is in
    data = scratch / "r2e.json"
    data.unlink(missing_ok=True)
    config = scratch / "r2e.cfg"
    rss2email_config(config, maildir, port, share, args)
    r2e_run = [str(r2e), "-c", str(config), "-d", str(data), "run"]
    log = scratch / "r2e.log"
    env = dict(os.environ)

    def delivered() -> int:
        return sum(1 for _ in (maildir / "INBOX" / "new").iterdir()) if maildir.exists() else 0

    first, _ = run_process(r2e_run, env, log)
    first = ProcessFigures(first.wall, first.cpu, first.rss_mb, delivered())
    if first.items != args.feeds * args.items:
        raise SystemExit(f"rss2email delivered {first.items}, expected {args.feeds * args.items}")
    unchanged, _ = run_process(r2e_run, env, log)
    if delivered() != first.items:
        raise SystemExit("rss2email's second cycle delivered again")
    return first, unchanged


# ------------------------------------------------------------------ the table


ROWS = (
    ("first10", "first cycle, rules on, 10 % on topic"),
    ("first100", "first cycle, rules on, 100 % on topic"),
    ("first_off", "first cycle, rules off (10 % farm)"),
    ("unchanged", "unchanged cycle (every feed 304)"),
)


def _median(figures: list[ProcessFigures]) -> ProcessFigures:
    return ProcessFigures(
        statistics.median(f.wall for f in figures),
        statistics.median(f.cpu for f in figures),
        max(f.rss_mb for f in figures),
        figures[0].items,
    )


def _cell(row: str, f: ProcessFigures | None) -> str:
    if f is None:
        return "—"
    if row == "unchanged":
        return f"{f.wall:.2f} s"
    return f"{f.items / f.wall:,.0f}/s ({f.wall:.1f} s)"


def _ratio(row: str, kmon: ProcessFigures | None, peer: ProcessFigures | None) -> str:
    """How many times faster kmon is than the peer (wall time over the same work)."""
    if kmon is None or peer is None:
        return "—"
    return f"×{peer.wall / kmon.wall:.2f}"


def process_mode(args: Any, port: int) -> None:
    backends, skipped = databases(args)
    if skipped:
        print(skipped)
    share = args.topical if args.topical is not None else 0.1
    results: dict[str, dict[str, list[ProcessFigures]]] = {}
    with tempfile.TemporaryDirectory(prefix="kmon-farm-") as tmp:
        scratch = Path(tmp)
        for run in range(args.runs):
            for backend, url in backends:
                got = results.setdefault(backend, {})
                if args.no_rules:
                    # Only the store path: the cycles without rules, both of them.
                    first, unchanged = kmon_cycles(
                        scratch, backend, url, port, share, False, args, unchanged_cycle=True
                    )
                    got.setdefault("first_off", []).append(first)
                    got.setdefault("unchanged", []).append(unchanged)  # type: ignore[arg-type]
                    print(f"run {run + 1} {backend}: " + _run_line(got), flush=True)
                    continue
                first, unchanged = kmon_cycles(scratch, backend, url, port, share, True, args)
                got.setdefault("first10", []).append(first)
                got.setdefault("unchanged", []).append(unchanged)  # type: ignore[arg-type]
                first, _ = kmon_cycles(scratch, backend, url, port, 1.0, True, args)
                got.setdefault("first100", []).append(first)
                first, _ = kmon_cycles(scratch, backend, url, port, share, False, args)
                got.setdefault("first_off", []).append(first)
                print(f"run {run + 1} {backend}: " + _run_line(got), flush=True)
            if args.peer == "rss2email":
                r2e = rss2email_command(args.peer_venv)
                first, unchanged = rss2email_cycles(scratch, r2e, port, share, args)
                got = results.setdefault("rss2email", {})
                got.setdefault("first10", []).append(first)
                got.setdefault("unchanged", []).append(unchanged)
                print(f"run {run + 1} rss2email: " + _run_line(got), flush=True)
        if any(b == "postgresql" for b, _ in backends):
            asyncio.run(fresh_postgres(args.pg_url, drop_only=True))
    _print_table(results, args)


def _run_line(got: dict[str, list[ProcessFigures]]) -> str:
    return "; ".join(f"{row} {_cell(row, runs[-1])}" for row, runs in got.items())


def _print_table(results: dict[str, dict[str, list[ProcessFigures]]], args: Any) -> None:
    medians = {
        who: {row: _median(runs) for row, runs in rows.items()} for who, rows in results.items()
    }
    # rss2email has no rules: the same first cycle stands beside each of kmon's.
    peer = medians.get("rss2email", {})
    peer_rows = {"first10": "first10", "first100": "first10", "first_off": "first10"}
    columns = [c for c in ("sqlite", "postgresql") if c in medians]
    head = ["", *(f"kmon {c}" for c in columns)]
    if peer:
        head += ["rss2email", *(f"{c} vs rss2email" for c in columns)]
    table = [head]
    for row, label in ROWS:
        if not any(row in medians[c] for c in columns):
            continue
        cells = [label, *(_cell(row, medians[c].get(row)) for c in columns)]
        if peer:
            theirs = peer.get(peer_rows.get(row, row))
            cells += [_cell(row, theirs)]
            cells += [_ratio(row, medians[c].get(row), theirs) for c in columns]
        table.append(cells)
    rss = ["peak RSS (largest process)"]
    cpu = ["CPU s, first cycle 10 % / unchanged"]
    first = "first_off" if args.no_rules else "first10"
    cpu[0] = cpu[0].replace("10 %", "rules off" if args.no_rules else "10 %")
    for who in [*columns, *(["rss2email"] if peer else [])]:
        rss.append(f"{max(f.rss_mb for f in medians[who].values()):.0f} MB")
        theirs = medians[who].get(first) or medians[who]["first10"]
        cpu.append(f"{theirs.cpu:.1f} / {medians[who]['unchanged'].cpu:.2f}")
    if peer:
        theirs_rss = max(f.rss_mb for f in peer.values())
        rss += [f"×{max(f.rss_mb for f in medians[c].values()) / theirs_rss:.2f}" for c in columns]
        cpu += ["" for _ in columns]
    table += [rss, cpu]
    print()
    print("| " + " | ".join(table[0]) + " |")
    print("|" + "---|" * len(table[0]))
    for cells in table[1:]:
        print("| " + " | ".join(cells) + " |")
    print(
        "(medians of the runs; items/s = new items over the process's wall time, start-up "
        "included; kmon vs rss2email: rss2email's wall time over kmon's, ×2 = twice as fast; "
        "RSS: kmon's over rss2email's)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--per-host-limit", type=int, default=100)
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    ap.add_argument(
        "--pg-pool-size",
        type=int,
        default=10,
        help="database.pool_size on PostgreSQL; per_host_limit there is at most twice it "
        "(the pool's connections with overflow)",
    )
    ap.add_argument(
        "--parse-workers",
        type=int,
        default=0,
        help="http.parse_workers of kmon's config (whole processes; 0: left out)",
    )
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument(
        "--topical",
        type=float,
        default=None,
        help="share of on-topic items, 0..1 (whole processes: 0.1 unless given; "
        "--in-process: the earlier one-template farm unless given)",
    )
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="the earlier mode: open_runtime and poll_once in one spawned process",
    )
    ap.add_argument(
        "--no-rules",
        action="store_true",
        help="rules off; whole processes: only the first cycle without rules and the "
        "unchanged cycle after it (rules off too)",
    )
    ap.add_argument("--peer", choices=["rss2email"], help="run the peer on the same farm")
    ap.add_argument(
        "--peer-venv",
        type=Path,
        default=Path(tempfile.gettempdir()) / "kmon-bench-rss2email-3.14",
        help="scratch virtualenv for the peer (made on first use)",
    )
    ap.add_argument("--lifetime", type=float, default=3600, help="server stops after this (s)")
    args = ap.parse_args()
    if not args.skip_pg and "bench" not in (make_url(args.pg_url).database or ""):
        ap.error("--pg-url: the database is dropped and recreated; its name must contain 'bench'")
    if args.topical is not None and not 0 <= args.topical <= 1:
        ap.error("--topical: a share between 0 and 1")
    if args.in_process:
        shares = [args.topical]
    else:
        shares = sorted({args.topical if args.topical is not None else 0.1, 1.0})

    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    server = ctx.Process(
        target=serve_farm,
        args=(theirs, args.feeds, args.items, shares, args.lifetime),
        daemon=True,
    )
    server.start()
    try:
        port, sizes = ours.recv()
        farms = ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sizes.items())
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"farm: {args.feeds} feeds × {args.items} items on {HOST}:{port} ({farms} of "
            f"feed XML), server pid {server.pid}; per_host_limit={args.per_host_limit}; "
            f"{args.runs} runs; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
            f"load average {load}"
        )
        if args.in_process:
            in_process_mode(args, port)
        else:
            process_mode(args, port)
        print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        ours.send("stop")
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()
            server.join()


def in_process_mode(args: Any, port: int) -> None:
    backends, skipped = databases(args)
    if skipped:
        print(skipped)
    for backend, url in backends:
        runs, rss_mb = _run_child(kmon_side, backend, url, port, args)
        rates = [r.items / r.first_cycle for r in runs]
        print(
            f"{backend:<10}: first cycle {statistics.median(rates):>8,.0f} new items/s "
            f"({statistics.median(r.first_cycle for r in runs):.2f} s for "
            f"{runs[0].items:,} items, {runs[0].signals:,} signals); 304 cycle "
            f"{statistics.median(r.not_modified_cycle for r in runs):.3f} s; "
            f"peak RSS {rss_mb:.0f} MB"
        )
        print(
            "            runs: "
            + ", ".join(f"{r:,.0f}/s" for r in rates)
            + " | 304: "
            + ", ".join(f"{r.not_modified_cycle:.3f}s" for r in runs)
            + " | kmon CPU s, 1st (event loop thread) / 304: "
            + ", ".join(
                f"{r.first_cpu:.2f} ({r.first_loop_cpu:.2f}) / {r.not_modified_cpu:.2f}"
                for r in runs
            )
        )


if __name__ == "__main__":
    main()
