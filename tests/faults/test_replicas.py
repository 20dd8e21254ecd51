"""Three ``kmon run`` replicas on one PostgreSQL database divide a farm of 200 growing
feeds between them: the farm sees each feed fetched once per interval, not once per
replica; every item served is stored once; every alert reaches the Slack stand-in once.
A replica SIGKILLed, or cut off from the database and put back, loses nothing: after
``replicas.lease`` the others poll its sources, and nothing is stored or sent twice
(but for one message in flight at the fault, sent again after its delivery's lease).

The bounds are the configuration's: after a poll a source is due again in the
interval give or take ``scheduler.jitter``, and a replica waits up to
``replicas.claim_jitter`` before it claims a due source. So two fetches of one feed are
at least ``interval * (1 - jitter) - claim_jitter`` apart (the claim jitter is the
allowance for a poll that waits for its host's slot: a fetch by a second replica of a
source the first holds would come within the claim jitter of the first's), and a feed
whose replica is gone is fetched again within its lease, an interval and a claim jitter.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from monitor.config import Settings
from monitor.db.engine import make_engine, make_sessionmaker
from monitor.db.schema import Item, SignalItem, SignalRow
from tests.farm import MARKER, FeedFarm
from tests.faults.daemon import Daemon, Line, environment, kmon_json
from tests.monitor.alerts.slack_server import SlackWebhookServer, running_slack_server
from tests.tcp_proxy import TcpProxy

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    # PostgreSQL only: on SQLite a second ``kmon run`` refuses to start.
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]

FEEDS = 200
REPLICAS = 3
INTERVAL = 2.0  # loopback sources have no interval floor
JITTER = 0.1  # scheduler.jitter, the default
LEASE = 3.0
HEARTBEAT = 1.0
CLAIM_JITTER = 0.5  # the default
GROW_EVERY = 3.0  # each feed gains an item this often
ON_TOPIC_EVERY = 20  # and every 20th raises a signal
# A send cut short is sent again this much later; a round starts sends only in the
# first half of it, which a loaded machine needs some seconds of.
DISPATCH_LEASE = 10.0

# Two fetches of a feed, at the least this far apart (see the module docstring).
MIN_GAP = INTERVAL * (1 - JITTER) - CLAIM_JITTER
# A source is polled again at the latest this long after its last poll, when the
# replica that held it is gone: its lease runs out, then it is due and claimed.
# The heartbeat is the allowance for the replicas' rounds of claiming.
MAX_GAP = LEASE + INTERVAL * (1 + JITTER) + CLAIM_JITTER + HEARTBEAT
assert MIN_GAP > CLAIM_JITTER, "a second fetch within the claim jitter must stand out"

OK = ("ok", "not_modified")


@pytest_asyncio.fixture
async def farm() -> AsyncIterator[FeedFarm]:
    farm = FeedFarm(FEEDS, grow_every=GROW_EVERY, on_topic_every=ON_TOPIC_EVERY)
    await farm.start()
    try:
        yield farm
    finally:
        await farm.close()


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[SlackWebhookServer]:
    async with running_slack_server() as server:
        yield server


def write_config(path: Path, db_url: str, farm: FeedFarm, slack: SlackWebhookServer) -> Path:
    settings: dict[str, Any] = {
        "database": {"url": db_url, "pool_size": 6},
        # Every feed is on 127.0.0.1: one host, many paths.
        "http": {"per_host_limit": 100},
        "scheduler": {"jitter": JITTER},
        "quotes": {"enabled": False},
        "alerts": {
            "channels": {"slack": {"type": "slack", "webhook_url": slack.url, "timeout": 10}},
            "routes": [{"name": "news", "match": {"kinds": ["news"]}, "channels": ["slack"]}],
            # One signal per message, so that a message is a delivery.
            "dispatch": {"lease": DISPATCH_LEASE, "max_per_message": 1},
        },
        "sources": [
            {"name": f"farm-{n:03d}", "url": farm.url(n), "interval": INTERVAL}
            for n in range(FEEDS)
        ],
    }
    if "replicas" in Settings.model_fields:
        settings["replicas"] = {
            "lease": LEASE,
            "heartbeat": HEARTBEAT,
            "claim_jitter": CLAIM_JITTER,
        }
    path.write_text(json.dumps(settings), encoding="utf-8")  # YAML reads JSON
    return path


def replica_env(config: Path, n: int, *, db_url: str | None = None) -> dict[str, str]:
    env = environment(config)
    if "replicas" in Settings.model_fields:
        env["KMON_REPLICAS__NAME"] = f"replica-{n}"
    if db_url is not None:
        env["KMON_DATABASE__URL"] = db_url
    return env


def timestamp(line: Line) -> float:
    return datetime.fromisoformat(str(line["timestamp"])).timestamp()


def polls(lines: Iterable[Line]) -> list[Line]:
    return [x for x in lines if x.get("event") == "poll"]


def health_port(daemon: Daemon) -> int:
    [line] = daemon.events("health_server_started")
    return int(line["port"])


async def _started(daemon: Daemon) -> None:
    await daemon.wait_for(
        lambda lines: any(x.get("event") == "daemon_started" for x in lines), within=60
    )


class Replicas:
    """The ``kmon run`` processes of a test, and waits on them and the farm."""

    def __init__(self, farm: FeedFarm, envs: list[dict[str, str]]) -> None:
        self.farm = farm
        self.daemons = [Daemon(env) for env in envs]
        self.stopped: set[int] = set()

    async def start(self) -> None:
        """The first replica, then the others together, each until it has started."""
        first, *others = self.daemons
        await first.start()
        await _started(first)
        for daemon in others:
            await daemon.start()
        for daemon in others:
            await _started(daemon)

    async def until(self, done: Callable[[], Any], *, within: float) -> Any:
        """Wait until ``done()`` is truthy, re-checked at every request to the farm and
        every log line; fail if a replica that should run has exited."""
        async with asyncio.timeout(within):
            while not (result := done()):
                running = [d for i, d in enumerate(self.daemons) if i not in self.stopped]
                for daemon in running:
                    assert not daemon.exited, f"a replica exited: {daemon.lines[-3:]} {daemon.other[-5:]}"
                waits = [asyncio.ensure_future(self.farm.arrived())]
                waits += [asyncio.ensure_future(d.changed()) for d in running]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
        return result

    async def kill(self, n: int) -> None:
        self.stopped.add(n)
        await self.daemons[n].stop(signal.SIGKILL)

    async def stop_all(self) -> None:
        """SIGTERM every running replica at once; each exits 0."""
        running = [n for n in range(len(self.daemons)) if n not in self.stopped]
        self.stopped.update(running)
        codes = await asyncio.gather(*(self.daemons[n].stop() for n in running))
        assert set(codes) <= {0}, [self.daemons[n].lines[-5:] for n in running]

    async def close(self) -> None:
        for daemon in self.daemons:
            await daemon.close()
        import os  # DEBUG
        if os.environ.get("RP_DUMP"):
            with open(os.environ["RP_DUMP"], "w") as f:
                for n, d in enumerate(self.daemons):
                    for x in d.lines:
                        if x.get("event") != "poll" or x.get("status") not in OK:
                            f.write(json.dumps({"r": n, **x}, ensure_ascii=False) + "\n")

    def lines(self) -> list[Line]:
        return [x for d in self.daemons for x in d.lines]


def fetched_since(farm: FeedFarm, since: float, times: int = 1) -> bool:
    """Whether every feed has been asked ``times`` times since ``since``."""
    return all(len(t) >= times for t in farm.fetch_times(since).values())


def not_modified_since(farm: FeedFarm, since: float) -> bool:
    """Whether every feed has answered a 304 since ``since``: its last content, and so
    every item it served, is stored (the ETag is recorded with the items)."""
    got = {r.feed for r in farm.requests if r.at >= since and r.status == 304}
    return len(got) == farm.feeds


def markers(slack: SlackWebhookServer) -> Counter[str]:
    """How many times each item's signal reached Slack."""
    found: Counter[str] = Counter()
    for received in slack.received:
        found.update(set(MARKER.findall(received.payload["text"])))
    return Counter({f"F{f}K{k}": n for (f, k), n in found.items()})


def marker_of_guid(guid: str) -> str:
    feed, index = guid.rsplit("/", 2)[1:]
    return f"F{int(feed):04d}K{int(index):04d}"


def short_gaps(farm: FeedFarm) -> dict[int, float]:
    """The feeds fetched twice within MIN_GAP, with their shortest gap."""
    out = {}
    for feed, times in farm.fetch_times().items():
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        if gaps and min(gaps) < MIN_GAP:
            out[feed] = round(min(gaps), 3)
    return out


async def drain(replicas: Replicas, farm: FeedFarm, slack: SlackWebhookServer) -> None:
    """Stop the farm's growth, wait until everything served is stored and its alerts
    are out, then stop the replicas."""
    frozen = farm.freeze()
    try:
        await replicas.until(lambda: not_modified_since(farm, frozen), within=30)
    except TimeoutError:
        after = [r for r in farm.requests if r.at >= frozen]
        answered = {r.feed for r in after if r.status == 304}
        raise AssertionError(
            f"{farm.feeds - len(answered)} feeds gave no 304 in 30s after the freeze; "
            f"{len(after)} requests since, {Counter(r.status for r in after)}; "
            f"polls logged {Counter(x.get('status') for x in polls(replicas.lines()))}"
        ) from None
    wanted = {marker_of_guid(g) for g in farm.on_topic_served()}
    try:
        await replicas.until(lambda: set(markers(slack)) >= wanted, within=30)
    except TimeoutError:
        missing = sorted(wanted - set(markers(slack)))
        texts = [r.payload.get("text") for r in slack.received[:3]]
        raise AssertionError(
            f"{len(missing)} of {len(wanted)} alerts never arrived, e.g. {missing[:5]}; "
            f"{len(slack.received)} received: {texts}"
        ) from None
    await replicas.stop_all()


def _soft(fn):  # DEBUG
    import functools
    import os
    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            r = fn(*a, **k)
            print(f"SOFT {fn.__name__}: ok")
            return r
        except AssertionError as exc:
            if not os.environ.get("RP_SOFT"):
                raise
            print(f"SOFT {fn.__name__}: FAILED {str(exc)[:300]}")
    if asyncio.iscoroutinefunction(fn):
        async def awrapper(*a, **k):
            try:
                r = await fn(*a, **k)
                print(f"SOFT {fn.__name__}: ok")
                return r
            except AssertionError as exc:
                if not os.environ.get("RP_SOFT"):
                    raise
                print(f"SOFT {fn.__name__}: FAILED {str(exc)[:300]}")
        return awrapper
    return wrapper


async def stored(db_url: str) -> tuple[Counter[str], set[str], int]:
    """Each stored item's count by guid, the guids of the items linked to a news
    signal, and the number of news signals."""
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as session:
            counts = Counter(
                dict((await session.execute(
                    select(Item.external_id, func.count()).group_by(Item.external_id)
                )).all())  # fmt: skip
            )
            linked = set(
                await session.scalars(
                    select(Item.external_id)
                    .join(SignalItem, SignalItem.item_id == Item.id)
                    .join(SignalRow, SignalRow.id == SignalItem.signal_id)
                    .where(SignalRow.kind == "news")
                )
            )
            news = await session.scalar(
                select(func.count()).select_from(SignalRow).where(SignalRow.kind == "news")
            )
    finally:
        await engine.dispose()
    return counts, linked, int(news or 0)


@_soft
async def assert_once(
    db_url: str, farm: FeedFarm, slack: SlackWebhookServer, *, in_flight: int = 0
) -> None:
    """Every item served is stored once; each on-topic one raised one signal, which
    reached Slack once (``in_flight``: resends allowed, one per fault)."""
    counts, linked, news = await stored(db_url)
    assert set(counts) == set(farm.served), "items lost or not the farm's"
    assert {n for n in counts.values()} == {1}, "an item stored twice"
    on_topic = farm.on_topic_served()
    assert linked == on_topic and news == len(on_topic)
    got = markers(slack)
    assert set(got) == {marker_of_guid(g) for g in on_topic}
    assert all(r.status == 200 and r.problems == () for r in slack.received)
    extra = sum(n - 1 for n in got.values())
    assert extra <= in_flight, {m: n for m, n in got.items() if n > 1}


@_soft
def assert_counts(least: float, count: int, most: float) -> None:
    assert least <= count <= most, (least, count, most)


@_soft
def assert_spacing(farm: FeedFarm) -> None:
    """No feed fetched twice within MIN_GAP: no source polled by two replicas."""
    short = short_gaps(farm)
    assert not short, (
        f"{len(short)} of {farm.feeds} feeds fetched twice within {MIN_GAP:g}s, "
        f"e.g. {sorted(short.items())[:5]}"
    )


@_soft
def assert_taken_over(farm: FeedFarm, since: float) -> None:
    """Every feed fetched within MAX_GAP of its last fetch before ``since``."""
    late = {}
    for feed, times in farm.fetch_times().items():
        before = [t for t in times if t < since]
        after = [t for t in times if t >= since]
        last = before[-1] if before else since
        if not after or after[0] - last > MAX_GAP:
            late[feed] = round(after[0] - last, 2) if after else None
    assert not late, f"{len(late)} feeds waited past {MAX_GAP:g}s: {sorted(late.items())[:5]}"


@_soft
def assert_replica_fields(replicas: Replicas) -> None:
    if "replicas" not in Settings.model_fields:
        return
    for n, daemon in enumerate(replicas.daemons):
        [started] = daemon.events("daemon_started")
        assert started["replica"] == f"replica-{n}"
        mine = polls(daemon.lines)
        assert mine, f"replica-{n} polled nothing"
        assert all(x["replica"] == f"replica-{n}" and x["late"] >= 0 for x in mine)


async def test_three_replicas_fetch_each_feed_once_per_interval(
    db_url: str, farm: FeedFarm, slack: SlackWebhookServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "kmon.yaml", db_url, farm, slack)
    replicas = Replicas(farm, [replica_env(config, n) for n in range(REPLICAS)])
    try:
        await replicas.start()
        begun = time.time()
        # Five rounds of the whole farm with every replica running.
        await replicas.until(lambda: fetched_since(farm, begun, 5), within=40)
        window = (begun, time.time())
        # Each feed fetched once per interval, not once per replica.
        assert_spacing(farm)
        span = window[1] - window[0]
        counts = [len(t) for t in farm.fetch_times(*window).values()]
        # The jitter averages out over the farm: a gap is the interval on average,
        # plus the wait for a claim and the poll itself.
        most = FEEDS * (span / INTERVAL + 1)
        least = FEEDS * (span / (INTERVAL * (1 + JITTER) + CLAIM_JITTER + HEARTBEAT) - 1)
        assert_counts(least, sum(counts), most)
        if "replicas" in Settings.model_fields:
            listed = await kmon_json("replicas", "list", env=replicas.daemons[0].env)
            assert sorted(r["id"] for r in listed if r["alive"]) == [
                f"replica-{n}" for n in range(REPLICAS)
            ]
        await drain(replicas, farm, slack)
    finally:
        await replicas.close()

    assert_spacing(farm)
    assert_replica_fields(replicas)
    for daemon in replicas.daemons:
        assert daemon.events("replica_stopped") or "replicas" not in Settings.model_fields
    await assert_once(db_url, farm, slack)
    shares = Counter(str(x.get("replica")) for x in polls(replicas.lines()))
    print(f"{sum(counts)} fetches in {span:.1f}s, polls by replica {dict(shares)}")


async def test_a_killed_replicas_sources_go_to_the_others_after_its_lease(
    db_url: str, farm: FeedFarm, slack: SlackWebhookServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "kmon.yaml", db_url, farm, slack)
    replicas = Replicas(farm, [replica_env(config, n) for n in range(REPLICAS)])
    victim = replicas.daemons[-1]
    try:
        await replicas.start()
        begun = time.time()
        await replicas.until(lambda: fetched_since(farm, begun, 2), within=30)
        # Killed while it sends: a message may be in flight.
        sent = len(slack.received)
        await replicas.until(lambda: len(slack.received) > sent, within=30)
        killed = time.time()
        await replicas.kill(REPLICAS - 1)
        await replicas.until(lambda: fetched_since(farm, killed + LEASE), within=30)
        if "replicas" in Settings.model_fields:
            listed = await kmon_json("replicas", "list", env=replicas.daemons[0].env)
            gone = [r for r in listed if r["id"] == f"replica-{REPLICAS - 1}"]
            assert all(not r["alive"] and r["sources"] == 0 for r in gone), gone
        await drain(replicas, farm, slack)
    finally:
        await replicas.close()

    assert polls(victim.lines), "the killed replica had polled nothing"
    assert_spacing(farm)
    assert_taken_over(farm, killed)
    await assert_once(db_url, farm, slack, in_flight=1)


async def readyz(port: int) -> int:
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"http://127.0.0.1:{port}/readyz") as response,
    ):
        return response.status


async def test_a_replica_cut_off_from_the_database_serves_again_once_it_is_back(
    db_url: str, farm: FeedFarm, slack: SlackWebhookServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "kmon.yaml", db_url, farm, slack)
    url = make_url(db_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.restore()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    envs = [replica_env(config, n) for n in range(REPLICAS - 1)]
    envs.append(replica_env(config, REPLICAS - 1, db_url=proxied))
    replicas = Replicas(farm, envs)
    cut_off = replicas.daemons[-1]
    readiness: list[tuple[float, int]] = []

    async def probe_until(status: int) -> None:
        port = health_port(cut_off)
        while (answer := await readyz(port)) != status:
            readiness.append((time.time(), answer))
            await replicas.until(lambda: readiness[-1][0] + 0.2 < time.time(), within=10)
        readiness.append((time.time(), answer))

    try:
        await replicas.start()
        begun = time.time()
        await replicas.until(lambda: fetched_since(farm, begun, 2), within=30)
        await probe_until(200)
        cut = time.time()
        await proxy.cut()
        await asyncio.wait_for(probe_until(503), timeout=LEASE + 10)
        await replicas.until(lambda: fetched_since(farm, cut + LEASE), within=30)
        restored = time.time()
        await proxy.restore()
        await replicas.until(
            lambda: any(
                timestamp(x) > restored and x["status"] in OK for x in polls(cut_off.lines)
            ),
            within=30,
        )
        await asyncio.wait_for(probe_until(200), timeout=30)
        await drain(replicas, farm, slack)
    finally:
        await replicas.close()
        await proxy.close()

    assert any(timestamp(x) < cut for x in polls(cut_off.lines))
    assert_spacing(farm)
    assert_taken_over(farm, cut)
    await assert_once(db_url, farm, slack, in_flight=1)
