"""Three ``kmon run`` replicas on one PostgreSQL database divide a farm of 200 growing
feeds between them: the farm sees each feed fetched once per interval, not once per
replica; every item served is stored once; every alert reaches the Slack stand-in once.
A replica SIGKILLed, or cut off from the database and put back, loses nothing: after
``replicas.lease`` the others poll its sources, and nothing is stored or sent twice
(but for one message in flight at the fault, sent again after its delivery's lease).

The bounds are the configuration's and the daemon's: after a poll a source is due again
in the interval give or take ``scheduler.jitter``, and a replica claims it at the
earliest ``DUE_SLACK`` before that, so two fetches of one feed are at least
``interval * (1 - jitter) - DUE_SLACK`` apart; a second replica polling a source the
first holds would fetch it within ``replicas.claim_jitter`` of the first, well inside
that. A source whose replica died mid-poll is free once its lease has run out; the
others look at a held source again at most an interval and ``TASK_MIN_GAP`` after they
found it held, then wait up to the claim jitter: it is fetched again within the sum.
"""

from __future__ import annotations

import asyncio
import itertools
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

from monitor.db.engine import make_engine, make_sessionmaker
from monitor.db.schema import Item, SignalItem, SignalRow
from monitor.rules.match import scanner_kind
from monitor.service.daemon import DUE_SLACK, TASK_MIN_GAP
from tests.conftest import DATABASES
from tests.farm import MARKER, FeedFarm
from tests.faults.daemon import Daemon, Line, environment, kmon_json
from tests.monitor.alerts.slack_server import SlackWebhookServer, running_slack_server
from tests.tcp_proxy import TcpProxy

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    # PostgreSQL only: on SQLite a second ``kmon run`` refuses to start.
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
    pytest.mark.skipif(
        "postgresql" not in DATABASES, reason="KMON_TEST_DATABASES has no postgresql"
    ),
]

FEEDS = 200
REPLICAS = 3
INTERVAL = 3.0  # loopback sources have no interval floor
JITTER = 0.1  # scheduler.jitter, the default
# A poll holds its source's lease from the claim to its stored result, waiting for
# its host's slot and the database's pool included: the lease must outlast that, or
# another replica takes the source mid-poll and fetches it too (ReplicaSettings).
LEASE = 6.0
HEARTBEAT = 2.0  # lease >= 2 heartbeats; a heartbeat times out after one
CLAIM_JITTER = 0.5  # the default
GROW_EVERY = 8.0  # each feed gains an item this often
ON_TOPIC_EVERY = 10  # and every 10th raises a signal
# A send cut short is sent again this much later; a round starts sends only in the
# first half of it, which a loaded machine needs some seconds of.
DISPATCH_LEASE = 10.0

# Two fetches of a feed, at the least this far apart (see the module docstring).
MIN_GAP = INTERVAL * (1 - JITTER) - DUE_SLACK.total_seconds()
# A source is polled again at the latest this long after its last poll, when the
# replica polling it is gone.
MAX_GAP = LEASE + INTERVAL + TASK_MIN_GAP.total_seconds() + CLAIM_JITTER
assert MIN_GAP > CLAIM_JITTER, "a second fetch within the claim jitter must stand out"

OK = ("ok", "not_modified")


@pytest_asyncio.fixture
async def farm() -> AsyncIterator[FeedFarm]:
    farm = FeedFarm(FEEDS, grow_every=GROW_EVERY, window=10, on_topic_every=ON_TOPIC_EVERY)
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
        "database": {"url": db_url, "pool_size": 8},
        # Every feed is on 127.0.0.1: one host, many paths.
        "http": {"per_host_limit": 50},
        "scheduler": {"jitter": JITTER},
        "quotes": {"enabled": False},
        "alerts": {
            "channels": {"slack": {"type": "slack", "webhook_url": slack.url, "timeout": 10}},
            "routes": [{"name": "news", "match": {"kinds": ["news"]}, "channels": ["slack"]}],
            # One signal per message, so that a message is a delivery.
            "dispatch": {"lease": DISPATCH_LEASE, "max_per_message": 1},
        },
        "replicas": {"lease": LEASE, "heartbeat": HEARTBEAT, "claim_jitter": CLAIM_JITTER},
        "sources": [
            {"name": f"farm-{n:03d}", "url": farm.url(n), "interval": INTERVAL}
            for n in range(FEEDS)
        ],
    }
    path.write_text(json.dumps(settings), encoding="utf-8")  # YAML reads JSON
    return path


def replica_env(config: Path, n: int, *, db_url: str | None = None) -> dict[str, str]:
    env = environment(config)
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
        try:
            return await self._until(done, within)
        except TimeoutError:
            fetched = Counter(r.status for r in self.farm.requests)
            raise AssertionError(
                f"not within {within:g}s: {getattr(done, '__name__', done)}; the farm "
                f"answered {dict(fetched)}; polls by replica "
                f"{[len(polls(d.lines)) for d in self.daemons]}"
            ) from None

    async def _until(self, done: Callable[[], Any], within: float) -> Any:
        async with asyncio.timeout(within):
            while not (result := done()):
                running = [d for i, d in enumerate(self.daemons) if i not in self.stopped]
                for daemon in running:
                    assert not daemon.exited, (
                        f"a replica exited: {daemon.lines[-3:]} {daemon.other[-5:]}"
                    )
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

    def lines(self) -> list[Line]:
        return [x for d in self.daemons for x in d.lines]


def not_modified_since(farm: FeedFarm, since: float) -> bool:
    """Whether every feed has answered a 304 since ``since``: its last content, and so
    every item it served, is stored (the ETag is recorded with the items)."""
    return farm.not_modified_since(since)


def markers(slack: SlackWebhookServer) -> Counter[str]:
    """How many times each item's signal reached Slack."""
    found: Counter[str] = Counter()
    for received in slack.received:
        found.update(set(MARKER.findall(received.payload["text"])))
    return Counter({f"F{f}K{k}": n for (f, k), n in found.items()})


class AllReceived:
    """Whether Slack has every alert of ``wanted``; read again only when more came."""

    def __init__(self, slack: SlackWebhookServer, wanted: set[str]) -> None:
        self.slack, self.wanted, self.seen = slack, wanted, -1

    def __call__(self) -> bool:
        if len(self.slack.received) == self.seen:
            return False
        self.seen = len(self.slack.received)
        return set(markers(self.slack)) >= self.wanted


def marker_of_guid(guid: str) -> str:
    feed, index = guid.rsplit("/", 2)[1:]
    return f"F{int(feed):04d}K{int(index):04d}"


def poll_spans(replicas: Replicas) -> dict[str, list[tuple[float, float]]]:
    """Each source's polls as (start, end), from every replica's ``poll`` lines."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for line in polls(replicas.lines()):
        # The poll's own clock reading at its start (the database's clock), not the log
        # line's time: the line is written after the commit, which may be slow.
        start = datetime.fromisoformat(str(line["started_at"])).timestamp()
        spans.setdefault(str(line["source"]), []).append(
            (start, max(timestamp(line), start + line["duration_ms"] / 1000))
        )
    return {source: sorted(s) for source, s in spans.items()}


def short_gaps(farm: FeedFarm, replicas: Replicas) -> dict[int, float]:
    """The feeds fetched twice by polls that started within MIN_GAP of each other,
    with the shortest such gap.

    A poll takes its clock reading when it starts and may wait for its host's slot
    before it fetches, so the farm's gap between two fetches is measured between the
    starts of the polls that made them (the poll whose span, from its start to its log
    line, holds the fetch). Each poll makes one fetch: a fetch whose only holding polls
    have theirs already is that poll's request sent again (aiohttp resends an idempotent
    request once when a kept-alive connection drops under it, ``ClientSession._request``),
    not a second poll; two polls at once hold two fetches and are both counted.
    """
    spans = poll_spans(replicas)
    out = {}
    for feed, times in farm.fetch_times().items():
        mine = spans.get(f"farm-{feed:03d}", [])
        used: set[tuple[float, float]] = set()
        starts = []
        for t in times:
            holding = [span for span in mine if span[0] <= t <= span[1] + 0.01]
            fresh = [span for span in holding if span not in used]
            if holding and not fresh:
                continue  # the same poll's request again
            if fresh:
                used.add(fresh[0])
                starts.append(fresh[0][0])
            else:  # a poll with no line (its replica killed mid-poll)
                starts.append(t)
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        if gaps and min(gaps) < MIN_GAP:
            out[feed] = round(min(gaps), 3)
    return out


async def drain(replicas: Replicas, farm: FeedFarm, slack: SlackWebhookServer) -> None:
    """Stop the farm's growth, wait until everything served is stored and its alerts
    are out, then stop the replicas."""
    frozen = farm.freeze()
    try:
        await replicas.until(lambda: not_modified_since(farm, frozen), within=30)
    except AssertionError:
        after = [r for r in farm.requests if r.at >= frozen]
        answered = {r.feed for r in after if r.status == 304}
        raise AssertionError(
            f"{farm.feeds - len(answered)} feeds gave no 304 in 30s after the freeze; "
            f"{len(after)} requests since, {Counter(r.status for r in after)}; "
            f"polls logged {Counter(x.get('status') for x in polls(replicas.lines()))}"
        ) from None
    wanted = {marker_of_guid(g) for g in farm.on_topic_served()}
    try:
        # One message at a time per channel, each claimed, sent and marked.
        await replicas.until(AllReceived(slack, wanted), within=60)
    except AssertionError:
        missing = sorted(wanted - set(markers(slack)))
        texts = [r.payload.get("text") for r in slack.received[:3]]
        raise AssertionError(
            f"{len(missing)} of {len(wanted)} alerts never arrived, e.g. {missing[:5]}; "
            f"{len(slack.received)} received: {texts}"
        ) from None
    await replicas.stop_all()


def guid_of(external_id: str) -> str:
    """The feed's guid in a stored item's external id (``g:`` marks one from a guid)."""
    assert external_id.startswith("g:"), external_id
    return external_id.removeprefix("g:")


async def stored(db_url: str) -> tuple[Counter[str], set[str], int]:
    """Each stored item's count by guid, the guids of the items linked to a news
    signal, and the number of news signals."""
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = await session.execute(
                select(Item.external_id, func.count()).group_by(Item.external_id)
            )
            counts = Counter({guid_of(e): n for e, n in rows.all()})
            linked = set(
                guid_of(e)
                for e in await session.scalars(
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


def assert_counts(least: float, count: int, most: float) -> None:
    assert least <= count <= most, (least, count, most)


def assert_spacing(farm: FeedFarm, replicas: Replicas) -> None:
    """No feed fetched twice within MIN_GAP: no source polled by two replicas."""
    short = short_gaps(farm, replicas)
    # A poll that outlasts its lease lets another replica take the source mid-poll.
    longest = max((x["duration_ms"] / 1000 for x in polls(replicas.lines())), default=0.0)
    assert not short, (
        f"{len(short)} of {farm.feeds} feeds fetched twice within {MIN_GAP:g}s, "
        f"e.g. {sorted(short.items())[:5]}; the longest poll took {longest:.1f}s "
        f"(lease {LEASE:g}s)"
    )


def assert_taken_over(farm: FeedFarm, replicas: Replicas, since: float) -> None:
    """Every feed polled again within MAX_GAP of its last fetch before ``since``.

    The bound is the schedule's, so the poll is timed at its start, as in short_gaps:
    its fetch comes after it has waited for its host's slot."""
    spans = poll_spans(replicas)
    late = {}
    for feed, times in farm.fetch_times().items():
        mine = spans.get(f"farm-{feed:03d}", [])
        before = [t for t in times if t < since]
        after = [t for t in times if t >= since]
        last = before[-1] if before else since
        again = next((a for a, b in mine if a <= after[0] <= b + 0.01), after[0]) if after else 0
        if not after or again - last > MAX_GAP:
            late[feed] = round(again - last, 2) if after else None
    assert not late, f"{len(late)} feeds waited past {MAX_GAP:g}s: {sorted(late.items())[:5]}"


def assert_replica_fields(replicas: Replicas) -> None:
    for n, daemon in enumerate(replicas.daemons):
        [started] = daemon.events("daemon_started")
        assert started["replica"] == f"replica-{n}"
        assert started["matcher"] == scanner_kind()  # the same build as this process's
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
        # Four rounds of the whole farm with every replica running.
        await replicas.until(lambda: farm.fetched_since(begun, 4), within=60)
        window = (begun, time.time())
        listed = await kmon_json("replicas", "list", env=replicas.daemons[0].env)
        assert sorted(r["id"] for r in listed if r["alive"]) == [
            f"replica-{n}" for n in range(REPLICAS)
        ]
        await drain(replicas, farm, slack)
    finally:
        await replicas.close()

    assert_replica_fields(replicas)
    for daemon in replicas.daemons:
        assert daemon.events("replica_stopped")
    await assert_once(db_url, farm, slack)
    # Each feed fetched once per interval, not once per replica.
    assert_spacing(farm, replicas)
    span = window[1] - window[0]
    counts = [len(t) for t in farm.fetch_times(*window).values()]
    # The jitter averages out over the farm: a gap is the interval on average,
    # plus the wait for a claim and the poll itself.
    most = FEEDS * (span / INTERVAL + 1)
    least = FEEDS * (span / (INTERVAL * (1 + JITTER) + CLAIM_JITTER) - 1)
    assert_counts(least, sum(counts), most)
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
        await replicas.until(lambda: farm.fetched_since(begun, 2), within=30)
        # Killed while it sends: a message may be in flight.
        sent = len(slack.received)
        await replicas.until(lambda: len(slack.received) > sent, within=30)
        killed = time.time()
        await replicas.kill(REPLICAS - 1)
        await replicas.until(lambda: farm.fetched_since(killed + LEASE), within=30)
        listed = await kmon_json("replicas", "list", env=replicas.daemons[0].env)
        [gone] = [r for r in listed if r["id"] == f"replica-{REPLICAS - 1}"]
        assert not gone["alive"] and gone["sources"] == 0, gone
        await drain(replicas, farm, slack)
    finally:
        await replicas.close()

    assert polls(victim.lines), "the killed replica had polled nothing"
    await assert_once(db_url, farm, slack, in_flight=1)
    assert_taken_over(farm, replicas, killed)
    assert_spacing(farm, replicas)


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
        await replicas.until(lambda: farm.fetched_since(begun, 2), within=30)
        await probe_until(200)
        cut = time.time()
        await proxy.cut()
        await asyncio.wait_for(probe_until(503), timeout=LEASE + 10)
        await replicas.until(lambda: farm.fetched_since(cut + LEASE), within=30)
        restored, seen = time.time(), len(cut_off.lines)
        await proxy.restore()
        await replicas.until(
            lambda: any(
                x.get("event") == "poll" and x["status"] in OK and timestamp(x) > restored
                for x in cut_off.lines[seen:]
            ),
            within=30,
        )
        await asyncio.wait_for(probe_until(200), timeout=30)
        await drain(replicas, farm, slack)
    finally:
        await replicas.close()
        await proxy.close()

    assert any(timestamp(x) < cut for x in polls(cut_off.lines))
    await assert_once(db_url, farm, slack, in_flight=1)
    assert_taken_over(farm, replicas, cut)
    assert_spacing(farm, replicas)
