"""The Slack channel: what it renders, and how it reads Slack's answers.

Sending tests post to a real local server (tests.monitor.alerts.slack_server) that checks
every payload against Slack's limits and answers 400 when one is broken.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import unquote

import aiohttp
import pytest
from pydantic import ValidationError

from adapters.errors import AuthError, FetchError, PermanentError, TransientError
from monitor.alerts.message import AlertMessage, AlertSignal, MoveLine
from monitor.alerts.slack import (
    MAX_BLOCKS,
    MAX_HEADER_TEXT,
    MAX_SECTION_TEXT,
    MAX_TEXT,
    SlackChannel,
    SlackConfig,
    escape_mrkdwn,
    link_target,
    render_slack,
    slack_len,
)
from tests.monitor.alerts.slack_server import (
    HANG,
    WEBHOOK_SECRET,
    Fault,
    SlackWebhookServer,
    links_in,
    rate_limited,
    refused,
    server_error,
    slack_problems,
)

EVENT = datetime(2025, 6, 18, 0, 30, tzinfo=UTC)  # 09:30 KST

NEWS = AlertSignal(
    id=1,
    kind="policy_move",
    rule_id="policy-sovereign-ai",
    severity="critical",
    subject="035420",
    title="과기정통부, 소버린 AI 육성 전략 발표",
    event_time=EVENT,
    url="https://www.yna.co.kr/view/AKR20250618000100017",
    source="연합뉴스",
    move=MoveLine(ticker="035420", name="NAVER", price=215000.0, change_pct=3.2),
    terms=("소버린 AI", "육성 전략"),
    why="AI policy news, then NAVER moved",
    story="story-42",
)


def message(*signals: AlertSignal, **fields: object) -> AlertMessage:
    return AlertMessage(key="m-1", route="policy", signals=signals or (NEWS,), **fields)  # type: ignore[arg-type]


def sections(payload: dict[str, object]) -> list[str]:
    blocks = payload["blocks"]
    assert isinstance(blocks, list)
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


def context_texts(payload: dict[str, object]) -> list[str]:
    blocks = payload["blocks"]
    assert isinstance(blocks, list)
    return [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]


def all_mrkdwn(payload: dict[str, object]) -> list[str]:
    text = payload["text"]
    assert isinstance(text, str)
    return [text, *sections(payload), *context_texts(payload)]


# -- rendering -----------------------------------------------------------------


def test_one_signal_renders_header_link_move_why_source_and_kst_time() -> None:
    payload = render_slack(message())

    assert slack_problems(payload) == []
    header, section = payload["blocks"][0], payload["blocks"][1]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "🚨 CRITICAL · kmon alert"},
    }
    assert section["text"]["type"] == "mrkdwn"
    assert section["text"]["verbatim"] is True
    text = section["text"]["text"]
    assert links_in(text) == [(NEWS.url, NEWS.title)]
    assert "*NAVER* (035420) 215,000 ▲ +3.20%" in text
    assert "AI policy news, then NAVER moved" in text
    assert "rule `policy-sovereign-ai`" in text
    assert "terms: 소버린 AI, 육성 전략" in text
    assert "연합뉴스" in text
    assert "2025-06-18 09:30 KST" in text
    assert payload["unfurl_links"] is False
    assert payload["unfurl_media"] is False


def test_fallback_text_summarises_the_signal() -> None:
    payload = render_slack(message())

    text = payload["text"]
    assert NEWS.title in text
    assert "NAVER" in text
    assert links_in(text) == [(NEWS.url, NEWS.title)]


def test_grouped_signals_get_one_section_each_and_fallback_lines() -> None:
    second = replace(NEWS, id=2, severity="warning", title="카카오, AI 데이터센터 투자", url=None)
    payload = render_slack(message(NEWS, second))

    assert slack_problems(payload) == []
    assert payload["blocks"][0]["text"]["text"] == "🚨 CRITICAL · 2 signals"
    texts = sections(payload)
    assert len(texts) == 2
    assert "카카오, AI 데이터센터 투자" in texts[1]
    assert links_in(texts[1]) == []
    assert payload["text"].splitlines()[0] == "kmon CRITICAL: 2 signals"
    assert len(payload["text"].splitlines()) == 3


def test_folded_digest_and_test_messages_say_so_in_context() -> None:
    payload = render_slack(message(folded=7, digest=True, test=True))

    assert slack_problems(payload) == []
    notes = context_texts(payload)
    assert "+7 more folded in by the throttle (kmon signals list)" in notes
    assert any("Digest" in note for note in notes)
    assert any("Test message" in note for note in notes)
    assert payload["blocks"][0]["text"]["text"].startswith("[TEST] 📬 kmon digest · 8 signals")
    assert "+7 more folded in by the throttle (kmon signals list)" in payload["text"]


@pytest.mark.parametrize(
    "title",
    [
        "<!channel> 긴급 공지",
        "<!here|here> 지금 확인",
        "<!everyone>",
        "<@U123ABC> 님 확인 바랍니다",
        "<#C024BE7LR|general>",
        "<!subteam^S123|@ops>",
        "<http://evil.example|trusted> 클릭",
        "AT&T & 삼성 <b>bold</b>",
        "a > b < c",
        "줄바꿈\n> 인용문처럼\n*굵게* _기울임_",
    ],
)
def test_untrusted_titles_arrive_inert(title: str) -> None:
    signal = replace(NEWS, title=title, source=title, subject=title, terms=(title,), why=title)
    payload = render_slack(message(signal))

    assert slack_problems(payload) == []
    for text in all_mrkdwn(payload):
        # The only angle brackets left are the link we wrote ourselves.
        assert all(target == NEWS.url for target, _ in links_in(text)), text
        assert "<!" not in text and "<@" not in text and "<#" not in text
    headline = sections(payload)[0].splitlines()[0]
    [(target, label)] = links_in(headline)
    assert target == NEWS.url
    expected = " ".join(title.split()).replace("&", "&amp;").replace("<", "&lt;")
    assert label == expected.replace(">", "&gt;")


def test_escape_mrkdwn_uses_slacks_three_entities_only() -> None:
    assert escape_mrkdwn("A & <B> \"C\" 'D' *E*") == "A &amp; &lt;B&gt; \"C\" 'D' *E*"


def test_escape_mrkdwn_folds_lines_and_drops_controls_and_bidi_overrides() -> None:
    assert (
        escape_mrkdwn("첫 줄\r\n둘째\t줄\x1b[31m\u202eevil\u2028끝") == "첫 줄 둘째 줄 [31m evil 끝"
    )


def test_escape_mrkdwn_cuts_between_entities() -> None:
    cut = escape_mrkdwn("&" * 100, limit=22)

    assert cut == "&amp;" * 4 + "…"
    assert slack_len(cut) <= 22


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "vbscript:msgbox",
        "ftp://files.example/a",
        "/relative/path",
        "//no-scheme.example/a",
        "http://",
        "https://[::1",  # malformed
        "",
    ],
)
def test_only_http_urls_are_linked(url: str) -> None:
    payload = render_slack(message(replace(NEWS, url=url)))

    assert slack_problems(payload) == []
    assert link_target(url) is None
    for text in all_mrkdwn(payload):
        assert links_in(text) == []


@pytest.mark.parametrize(
    "url",
    [
        "https://news.example/a?x=1|<!channel>",
        "https://news.example/a>b<c",
        "https://news.example/기사 제목?q=소버린 AI&page=2",
        'https://news.example/"quoted"',
        "http://news.example/a\nb",
    ],
)
def test_urls_cannot_break_out_of_the_link(url: str) -> None:
    payload = render_slack(message(replace(NEWS, url=url, title="제목")))

    assert slack_problems(payload) == []
    [(target, label)] = links_in(sections(payload)[0].splitlines()[0])
    assert label == "제목"
    assert not set(target) & set('|<> "\n')
    assert unquote(target.replace("&amp;", "&")) == url


def test_korean_text_is_kept_as_it_is() -> None:
    payload = render_slack(message())

    encoded = json.dumps(payload, ensure_ascii=False)
    for word in ("과기정통부, 소버린 AI 육성 전략 발표", "연합뉴스", "소버린 AI, 육성 전략"):
        assert word in encoded


def test_sixty_signals_stay_within_limits_and_say_how_many_more() -> None:
    many = [replace(NEWS, id=n, title=f"기사 {n}: AI 정책 동향") for n in range(60)]
    payload = render_slack(message(*many))

    assert slack_problems(payload) == []
    assert len(payload["blocks"]) <= MAX_BLOCKS
    shown = len(sections(payload))
    assert 0 < shown < 60
    assert f"and {60 - shown} more not shown (kmon signals list)" in context_texts(payload)
    assert len(payload["text"].splitlines()) == 61  # every signal fits the fallback


def test_huge_hostile_signals_stay_within_every_limit() -> None:
    hostile = replace(
        NEWS,
        title="&<>" * 2000 + "😀" * 2000,
        source="&" * 5000,
        subject="<" * 5000,
        why="😀" * 5000,
        terms=tuple("&" * 500 for _ in range(50)),
        rule_id="`r`" * 500,
        url="https://news.example/" + "|" * 5000,
        move=MoveLine(ticker=">" * 500, name="&" * 500, price=1e15, change_pct=-29.99),
    )
    payload = render_slack(message(*[replace(hostile, id=n) for n in range(2000)], folded=10**6))

    assert slack_problems(payload) == []
    for block in payload["blocks"]:
        if block["type"] == "section":
            assert slack_len(block["text"]["text"]) <= MAX_SECTION_TEXT
        if block["type"] == "header":
            assert slack_len(block["text"]["text"]) <= MAX_HEADER_TEXT
    assert slack_len(payload["text"]) <= MAX_TEXT
    assert any("more not shown (kmon signals list)" in note for note in context_texts(payload))
    assert payload["text"].splitlines()[-2].startswith("and ")


def test_the_stand_in_server_does_refuse_broken_payloads() -> None:
    # The checks the sending tests rely on can fail.
    broken = {
        "text": "<!channel> & more",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}] * 51,
    }
    problems = slack_problems(broken)

    assert any("51 blocks" in p for p in problems)
    assert any("3001 > 3000" in p for p in problems)
    assert any("not an http(s) link: <!channel>" in p for p in problems)
    assert any("raw '&'" in p for p in problems)
    header = {"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}]}
    assert slack_problems(header) != []


# -- configuration -------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.com/services/T0/B0/" + WEBHOOK_SECRET,
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]:9000/hook",
    ],
)
def test_config_accepts_https_and_loopback_http(url: str) -> None:
    config = SlackConfig.model_validate({"type": "slack", "webhook_url": url})

    assert config.webhook_url.get_secret_value() == url
    assert config.timeout == 10


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.slack.com/services/T0/B0/" + WEBHOOK_SECRET,
        "ftp://hooks.slack.com/" + WEBHOOK_SECRET,
        "hooks.slack.com/services/" + WEBHOOK_SECRET,
        "https://hooks.slack.com/services/a b/" + WEBHOOK_SECRET,
        "https:///" + WEBHOOK_SECRET,
    ],
)
def test_config_refuses_other_urls_without_echoing_them(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SlackConfig.model_validate({"type": "slack", "webhook_url": url})

    assert WEBHOOK_SECRET not in str(caught.value)


@pytest.mark.parametrize("timeout", [0, -1, 121])
def test_config_bounds_the_timeout(timeout: float) -> None:
    with pytest.raises(ValidationError):
        SlackConfig.model_validate(
            {"type": "slack", "webhook_url": "https://hooks.slack.com/x", "timeout": timeout}
        )


def test_config_refuses_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        SlackConfig.model_validate(
            {"type": "slack", "webhook_url": "https://hooks.slack.com/x", "channel": "#general"}
        )


# -- sending -------------------------------------------------------------------


def channel_for(
    server: SlackWebhookServer, http: aiohttp.ClientSession, **settings: object
) -> SlackChannel:
    config = SlackConfig.model_validate({"type": "slack", "webhook_url": server.url, **settings})
    return SlackChannel("team-slack", config, http)


def assert_secret_kept(err: FetchError) -> None:
    assert WEBHOOK_SECRET not in str(err)
    assert WEBHOOK_SECRET not in repr(err.args)
    # No chained aiohttp error carries the URL into a logged traceback.
    assert err.__cause__ is None
    assert err.__context__ is None or err.__suppress_context__


async def test_send_posts_the_rendered_json_and_reports_slacks_answer(
    slack_server: SlackWebhookServer, http: aiohttp.ClientSession
) -> None:
    channel = channel_for(slack_server, http, username="kmon")

    sent = await channel.send(message())

    assert sent.detail == "200 ok"
    [post] = await slack_server.wait_for(1)
    assert post.problems == ()
    assert post.content_type == "application/json"
    expected = render_slack(message())
    expected["username"] = "kmon"
    assert post.payload == expected


async def test_fifty_plus_signals_are_accepted_by_the_strict_server(
    slack_server: SlackWebhookServer, http: aiohttp.ClientSession
) -> None:
    many = [replace(NEWS, id=n, title=f"<!here> 기사 {n} & 정책") for n in range(75)]

    sent = await channel_for(slack_server, http).send(message(*many, folded=3))

    assert sent.detail == "200 ok"
    [post] = await slack_server.wait_for(1)
    assert post.problems == ()
    assert len(post.payload["blocks"]) <= MAX_BLOCKS


async def test_429_is_transient_with_slacks_retry_after(
    slack_server: SlackWebhookServer, http: aiohttp.ClientSession
) -> None:
    slack_server.fail_next(rate_limited("30"))

    with pytest.raises(TransientError) as caught:
        await channel_for(slack_server, http).send(message())

    err = caught.value
    assert err.key == "http_429"
    assert err.http_status == 429
    assert err.retry_after == 30.0
    assert "rate_limited" in str(err)
    assert_secret_kept(err)


@pytest.mark.parametrize(
    ("fault", "key"),
    [
        (server_error(500, "rollup_error"), "http_500"),
        (server_error(502, "bad gateway"), "http_502"),
        (Fault(503, "unavailable", {"Retry-After": "120"}), "http_503"),
    ],
)
async def test_server_errors_are_transient(
    slack_server: SlackWebhookServer, http: aiohttp.ClientSession, fault: Fault, key: str
) -> None:
    slack_server.fail_next(fault)

    with pytest.raises(TransientError) as caught:
        await channel_for(slack_server, http).send(message())

    assert caught.value.key == key
    assert fault.body in str(caught.value)
    assert_secret_kept(caught.value)


@pytest.mark.parametrize(
    ("fault", "key", "error_type"),
    [
        (refused(400, "invalid_blocks"), "http_400", PermanentError),
        (refused(400, "invalid_payload"), "http_400", PermanentError),
        (refused(403, "action_prohibited"), "http_403", AuthError),
        (refused(403, "invalid_token"), "http_403", AuthError),
        (refused(404, "no_service"), "http_404", PermanentError),
        (refused(404, "channel_not_found"), "http_404", PermanentError),
        (refused(410, "channel_is_archived"), "http_410", PermanentError),
    ],
)
async def test_refusals_are_permanent_with_slacks_reason(
    slack_server: SlackWebhookServer,
    http: aiohttp.ClientSession,
    fault: Fault,
    key: str,
    error_type: type[PermanentError],
) -> None:
    slack_server.fail_next(fault)

    with pytest.raises(PermanentError) as caught:
        await channel_for(slack_server, http).send(message())

    err = caught.value
    assert type(err) is error_type
    assert err.key == key
    assert fault.body in str(err)
    assert_secret_kept(err)


async def test_a_long_error_body_is_cut_short(
    slack_server: SlackWebhookServer, http: aiohttp.ClientSession
) -> None:
    slack_server.fail_next(refused(400, "invalid_blocks\n" + "x" * 10_000))

    with pytest.raises(PermanentError) as caught:
        await channel_for(slack_server, http).send(message())

    assert "\n" not in str(caught.value)
    assert len(str(caught.value)) < 400


async def test_the_next_send_after_a_fault_goes_through(
    slack_server: SlackWebhookServer, http: aiohttp.ClientSession
) -> None:
    slack_server.fail_next(server_error())
    channel = channel_for(slack_server, http)

    with pytest.raises(TransientError):
        await channel.send(message())
    sent = await channel.send(message())

    assert sent.detail == "200 ok"
    assert [post.status for post in await slack_server.wait_for(2)] == [500, 200]


async def test_a_hanging_server_times_out_as_transient(
    slack_server: SlackWebhookServer, http: aiohttp.ClientSession
) -> None:
    slack_server.fail_next(HANG)

    with pytest.raises(TransientError) as caught:
        await channel_for(slack_server, http, timeout=0.2).send(message())

    assert caught.value.key == "timeout"
    assert "0.2s" in str(caught.value)
    assert_secret_kept(caught.value)
    assert len(await slack_server.wait_for(1)) == 1


async def test_a_closed_port_is_a_transient_connect_error(
    http: aiohttp.ClientSession, closed_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_port}/services/T0/B0/{WEBHOOK_SECRET}"
    config = SlackConfig.model_validate({"type": "slack", "webhook_url": url})

    with pytest.raises(TransientError) as caught:
        await SlackChannel("team-slack", config, http).send(message())

    assert caught.value.key == "connect"
    assert_secret_kept(caught.value)


async def test_a_wrong_webhook_path_is_permanent_no_service(
    slack_server: SlackWebhookServer, http: aiohttp.ClientSession
) -> None:
    config = SlackConfig.model_validate(
        {"type": "slack", "webhook_url": slack_server.url_for("/services/T0/B0/revoked")}
    )

    with pytest.raises(PermanentError) as caught:
        await SlackChannel("team-slack", config, http).send(message())

    assert caught.value.key == "http_404"
    assert "no_service" in str(caught.value)
    assert "revoked" not in str(caught.value)
