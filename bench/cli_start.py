"""How fast the admin CLI answers: whole ``kmon`` processes, side by side with a bare
interpreter, in one run.

Each command runs ``--runs`` times in a fresh process; the figures are the median wall
time and the peak RSS of that process, as GNU time (``/usr/bin/time``, Debian's
``time``) reports it: a child forked from this script would carry this script's own
pages in its peak.
``items list`` reads a scratch SQLite database this script migrates and fills with
``--items`` items first; ``rules test`` matches one headline against the default rules;
``poll`` is ``kmon poll``'s start-up and shut-down on that database with no source due
(settings, the rules, the engine and the schema check, the HTTP session, the alert
dispatcher's round), once with the rules cache (monitor/service/rulecache.py) and once
with ``KMON_RULES_CACHE=off``.

    .venv/bin/python bench/cli_start.py [--runs 15] [--items 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HEADLINE = "정부, 소버린 AI 전략 발표… 네이버·카카오 GPU 확보 지원"


TIME = "/usr/bin/time"


def measure(argv: list[str], env: dict[str, str], report: Path) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KiB) and CPU seconds (user + system) of one run of
    ``argv``: on a shared machine the CPU time says more than the wall time."""
    started = time.perf_counter()
    proc = subprocess.run(
        [TIME, "-o", str(report), "-f", "%M %U %S", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):  # `rules test` exits 1 when nothing fires
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()}")
    rss, user, system = report.read_text().split()[-3:]
    return elapsed, int(rss), float(user) + float(system)


async def fill(url: str, count: int) -> None:
    from adapters.records import RawItem
    from monitor.config import SourceConfig
    from monitor.db import migrate, repo
    from monitor.db.engine import make_engine, make_sessionmaker

    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
        now = datetime.now(UTC)
        async with make_sessionmaker(engine).begin() as session:
            await repo.sync_sources(
                session, [SourceConfig(name="yna", url="https://www.yna.co.kr/rss")], now=now
            )
            [source] = await repo.load_sources(session)
            items = [
                RawItem(
                    title=f"{HEADLINE} {n}",
                    url=f"https://www.yna.co.kr/view/AKR{n}",
                    guid=f"AKR{n}",
                    summary="과학기술정보통신부는 국가 AI 컴퓨팅 센터 구축 계획을 밝혔다.",
                    published_at=now - timedelta(minutes=n),
                )
                for n in range(count)
            ]
            await repo.insert_items(session, source, items, fetched_at=now)
    finally:
        await engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--items", type=int, default=2000)
    args = ap.parse_args()
    if not Path(TIME).exists():
        raise SystemExit(f"{TIME} is missing: apt-get install time")
    kmon = str(Path(sys.executable).with_name("kmon"))
    with tempfile.TemporaryDirectory() as scratch:
        db = Path(scratch) / "kmon.db"
        url = f"sqlite+aiosqlite:///{db}"
        config = Path(scratch) / "kmon.yaml"
        config.write_text(
            f"database:\n  url: {url}\nsources: []\nquotes: {{enabled: false}}\n",
            encoding="utf-8",
        )
        asyncio.run(fill(url, args.items))
        # The rules cache in the scratch directory: the first `kmon poll` below fills it.
        env = {**os.environ, "KMON_CONFIG": str(config), "XDG_CACHE_HOME": scratch}
        env.pop("CACHE_DIRECTORY", None)
        no_cache = {**env, "KMON_RULES_CACHE": "off"}
        commands = {
            "python3 -c pass": ([sys.executable, "-c", "pass"], env),
            "kmon --help": ([kmon, "--help"], env),
            "kmon items list --limit 20": ([kmon, "items", "list", "--limit", "20"], env),
            "kmon rules test TEXT": ([kmon, "rules", "test", HEADLINE], env),
            "kmon poll (nothing due)": ([kmon, "poll"], env),
            "  same, rules cache off": ([kmon, "poll"], no_cache),
        }
        report = Path(scratch) / "time.txt"
        measure(commands["kmon --help"][0], env, report)  # warm the page cache and byte code
        measure([kmon, "poll"], env, report)  # and the rules cache
        rows = []
        for name, (argv, command_env) in commands.items():
            runs = [measure(argv, command_env, report) for _ in range(args.runs)]
            times = [t for t, _, _ in runs]
            cpu = statistics.median(c for _, _, c in runs)
            rows.append((name, statistics.median(times), min(times), max(times), runs[-1][1], cpu))
    bare = rows[0][1]
    print(
        f"{args.runs} runs each, median wall time (min–max), peak RSS, median CPU; "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; load average "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    for name, median, low, high, rss, cpu in rows:
        extra = "" if name.startswith("python3") else f"  (+{median - bare:.3f} s over bare)"
        print(
            f"{name:<28} {median:6.3f} s ({low:.3f}–{high:.3f})  {rss / 1024:5.1f} MB  "
            f"CPU {cpu:.2f} s{extra}"
        )


if __name__ == "__main__":
    main()
