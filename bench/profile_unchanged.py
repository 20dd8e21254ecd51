"""Where an unchanged cycle of ``kmon poll`` spends its time: one whole process under
cProfile, every feed answering 304.

Run: .venv/bin/python bench/profile_unchanged.py [--feeds 1000] [--top 25]

The feed farm (bench/feed_farm.py, 10 % on topic) is served from a child process; a
``kmon poll --migrate`` with rules off stores its first cycle in a fresh SQLite file,
then ``python -m cProfile -m monitor … poll farm-0000 …`` polls every feed again
(each answers 304) and the profile is printed, by own time and kmon's functions by
cumulative time.
The processes import kmon from this checkout (its working directory and PYTHONPATH).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    from bench.feed_farm import kmon_config, serve_farm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    mp = multiprocessing.get_context("spawn")
    ours, theirs = mp.Pipe()
    server = mp.Process(target=serve_farm, args=(theirs, args.feeds, 50, [0.1], 900), daemon=True)
    server.start()
    try:
        port, _ = ours.recv()
        with tempfile.TemporaryDirectory(prefix="kmon-unchanged-") as tmp:
            scratch = Path(tmp)
            config = scratch / "kmon.yaml"
            farm = argparse.Namespace(
                feeds=args.feeds, per_host_limit=100, pg_pool_size=10, parse_workers=0
            )
            url = f"sqlite+aiosqlite:///{scratch / 'kmon.db'}"
            kmon_config(config, url, port, 0.1, farm, False)
            env = {k: v for k, v in os.environ.items() if not k.startswith("KMON_")}
            env["PYTHONPATH"] = str(REPO)
            kmon = ["-m", "monitor", "--config", str(config), "poll"]
            with open(scratch / "kmon.log", "ab") as log:
                subprocess.run(
                    [sys.executable, *kmon, "--migrate"],
                    env=env,
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    check=True,
                )
                names = [f"farm-{n:04d}" for n in range(args.feeds)]
                profile = scratch / "unchanged.prof"
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "cProfile", "-o", str(profile), *kmon, *names],
                    env=env,
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    check=True,
                )
                wall = time.perf_counter() - started
            stats = pstats.Stats(str(profile))
            stats.sort_stats("tottime").print_stats(args.top)
            # kmon's own functions by cumulative time (the entry frames say nothing).
            stats.sort_stats("cumulative").print_stats(r"/(monitor|adapters)/", args.top)
            print(
                f"unchanged cycle of {args.feeds} feeds under cProfile: {wall:.2f} s wall; "
                f"load {os.getloadavg()[0]:.2f}"
            )
    finally:
        ours.send("stop")
        server.join(timeout=10)


if __name__ == "__main__":
    main()
