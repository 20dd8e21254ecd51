"""The email channel: what it renders, and what a real SMTP server (aiosmtpd) receives.

The servers come from tests.monitor.alerts.smtp_server: STARTTLS or implicit TLS with a
certificate from a throw-away CA, AUTH required, faults scripted per command.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from pydantic import ValidationError

from adapters.errors import AuthError, PermanentError, TransientError
from monitor.alerting import EmailConfig, parse_address
from monitor.alerts.email import EmailChannel, render_email
from monitor.alerts.message import AlertMessage, AlertSignal, MoveLine
from tests.monitor.alerts.smtp_server import PASSWORD, USERNAME, SmtpServer

EVENT = datetime(2025, 6, 18, 0, 30, tzinfo=UTC)  # 09:30 KST
URL = "https://www.yna.co.kr/view/AKR20250618000100017?a=1&b=2"
CREATED = datetime(2025, 6, 18, 0, 31, tzinfo=UTC)

NEWS = AlertSignal(
    id=1,
    kind="policy_move",
    rule_id="policy-sovereign-ai",
    severity="critical",
    subject="035420",
    title="과기정통부, 소버린 AI 육성 전략 발표",
    event_time=EVENT,
    url=URL,
    source="연합뉴스",
    move=MoveLine(ticker="035420", name="NAVER", price=215000.0, change_pct=3.2),
    terms=("소버린 AI", "육성 전략"),
    why="AI policy news, then NAVER moved",
    story="story-42",
)

SETTINGS: dict[str, Any] = {
    "type": "email",
    "host": "smtp.example.kr",
    "username": "kmon",
    "password": "pw",
    "sender": "코스피 감시 <kmon@example.kr>",
    "recipients": ["홍길동 <hong@example.kr>", "ops@example.com"],
}


def message(*signals: AlertSignal, key: str = "policy:1", **fields: Any) -> AlertMessage:
    return AlertMessage(
        key=key, route="policy", signals=signals or (NEWS,), created_at=CREATED, **fields
    )


def config(**overrides: Any) -> EmailConfig:
    return EmailConfig.model_validate({**SETTINGS, **overrides})


def reparsed(mail: EmailMessage) -> EmailMessage:
    """As a mail client would read the bytes we send."""
    return email.message_from_bytes(mail.as_bytes(), policy=email.policy.default)


def bodies(mail: EmailMessage) -> tuple[str, str]:
    text = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


# -- rendering -----------------------------------------------------------------


def test_render_builds_multipart_text_and_html_with_korean_headers() -> None:
    mail = reparsed(render_email(message(), config()))

    assert mail.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in mail.iter_parts()] == ["text/plain", "text/html"]
    assert mail["Subject"] == "[kmon] [CRITICAL] 과기정통부, 소버린 AI 육성 전략 발표"
    assert mail["From"].addresses[0].display_name == "코스피 감시"
    assert mail["From"].addresses[0].addr_spec == "kmon@example.kr"
    assert [a.display_name for a in mail["To"].addresses] == ["홍길동", ""]
    assert mail["Date"].datetime == CREATED
    assert mail["Auto-Submitted"] == "auto-generated"
    text, html = bodies(mail)
    for body in (text, html):
        assert "NAVER (035420) 215,000 ▲ +3.20%" in body
        assert "rule policy-sovereign-ai" in body
        assert "소버린 AI, 육성 전략" in body
        assert "연합뉴스 · 2025-06-18 09:30 KST" in body
    assert URL in text
    assert 'href="https://www.yna.co.kr/view/AKR20250618000100017?a=1&amp;b=2"' in html


def test_korean_headers_are_encoded_words_on_the_wire() -> None:
    raw = render_email(message(), config()).as_bytes()

    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"=?utf-8?" in head


def test_html_escapes_titles_and_links_only_http_urls() -> None:
    hostile = replace(
        NEWS,
        title='<script>alert("x")</script> & <u>굵게</u>',
        source="<img src=x onerror=alert(1)>",
        url='https://news.example/a?"onmouseover="alert(1)',
    )
    scripted = replace(NEWS, id=2, title="링크 없음", url="javascript:alert(document.cookie)")
    data = replace(NEWS, id=3, title="데이터", url="data:text/html;base64,PHNjcmlwdD4=")

    _, html = bodies(reparsed(render_email(message(hostile, scripted, data), config())))

    assert "<script>" not in html and "<img" not in html and "<u>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;u&gt;굵게&lt;/u&gt;" in html
    assert 'href="https://news.example/a?&quot;onmouseover=&quot;alert(1)"' in html
    assert "javascript:" not in html
    assert "data:text" not in html
    assert html.count("<a href=") == 1


def test_a_title_cannot_inject_headers_or_recipients() -> None:
    sneaky = replace(NEWS, title="안녕\r\nBcc: victim@example.com\r\n\r\n본문 위조")

    mail = render_email(message(sneaky), config())
    raw = mail.as_bytes()

    parsed = reparsed(mail)
    assert parsed["Bcc"] is None
    assert "\n" not in parsed["Subject"] and "\r" not in parsed["Subject"]
    assert parsed["Subject"].startswith("[kmon] [CRITICAL] 안녕 Bcc: victim@example.com")
    assert b"\r\nBcc:" not in raw
    assert [a.addr_spec for a in parsed["To"].addresses] == ["hong@example.kr", "ops@example.com"]


def test_message_id_is_stable_for_a_key_and_differs_between_keys() -> None:
    first = render_email(message(key="policy:1,2"), config())
    again = render_email(message(key="policy:1,2"), config())
    other = render_email(message(key="policy:1;2"), config())

    assert first["Message-ID"] == again["Message-ID"] == "<policy=3A1=2C2@example.kr>"
    assert other["Message-ID"] != first["Message-ID"]


@pytest.mark.parametrize("key", ["a b\r\n<x>@y", "키-한글", "x" * 500, ""])
def test_message_id_is_well_formed_for_any_key(key: str) -> None:
    mail = reparsed(render_email(message(key=key), config()))

    message_id = mail["Message-ID"]
    assert message_id.startswith("<") and message_id.endswith("@example.kr>")
    local = message_id[1:].split("@")[0]
    assert local and local.isascii()
    assert not set(local) & set(' <>@\r\n"')
    assert len(message_id) < 120


def test_updates_of_one_story_thread_together() -> None:
    first = reparsed(render_email(message(NEWS, key="a"), config()))
    later = reparsed(render_email(message(replace(NEWS, id=9), key="b"), config()))
    mixed = reparsed(render_email(message(NEWS, replace(NEWS, story="other"), key="c"), config()))
    loose = reparsed(render_email(message(replace(NEWS, story=None), key="d"), config()))

    assert first["In-Reply-To"] == later["In-Reply-To"] == "<story-story-42@example.kr>"
    assert first["References"] == later["References"] == first["In-Reply-To"]
    assert first["Message-ID"] != later["Message-ID"]
    assert mixed["In-Reply-To"] is None and mixed["References"] is None
    assert loose["In-Reply-To"] is None


def test_subject_counts_grouped_and_folded_signals_and_marks_tests() -> None:
    second = replace(NEWS, id=2, severity="warning", title="카카오 급등")

    subject = render_email(message(NEWS, second, folded=3, test=True), config())["Subject"]

    assert subject == "[kmon] [TEST] [CRITICAL] 과기정통부, 소버린 AI 육성 전략 발표 (+4 more)"


def test_digest_subject_and_notes() -> None:
    mail = reparsed(
        render_email(message(NEWS, folded=2, digest=True), config(subject_prefix="[감시]"))
    )

    assert mail["Subject"] == "[감시] Digest: 3 signals"
    text, html = bodies(mail)
    assert "+2 more folded in by the throttle (kmon signals list)" in text
    assert "Digest" in html


def test_a_long_headline_gives_a_bounded_subject() -> None:
    subject = render_email(message(replace(NEWS, title="가" * 1000)), config())["Subject"]

    assert len(subject) <= 200
    assert subject.endswith("…")


@pytest.mark.parametrize(
    "title",
    [
        "정부, 국가 AI 컴퓨팅 센터 GPU 확보 사업 참여 기업 공모 착수",
        "대통령실 첫 AI미래기획수석에 하정우 네이버 AI센터장 임명 - 한국경제 - 연합뉴스 속보",
        "소버린 AI 경쟁 본격화 네이버 카카오 나란히 신고가 외국인 순매수 이어져",
    ],
)
def test_korean_subjects_keep_their_spaces_on_the_wire(title: str) -> None:
    # Folding a long Korean subject may split it into encoded words at a space, which
    # readers then drop: the subject read back must be the one written, every space.
    mail = render_email(message(replace(NEWS, title=title)), config())
    wire = mail.as_bytes()
    subject_lines = wire.split(b"\r\n\r\n")[0].decode("ascii")
    assert all(len(line) <= 78 for line in subject_lines.split("\r\n"))
    assert title in str(reparsed(mail)["Subject"])


# -- configuration -------------------------------------------------------------


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("tls", 465), ("none", 25)])
def test_port_defaults_follow_security(security: str, port: int) -> None:
    settings = {**SETTINGS, "security": security, "host": "127.0.0.1"}

    assert EmailConfig.model_validate(settings).smtp_port == port
    assert EmailConfig.model_validate({**settings, "port": 2525}).smtp_port == 2525


@pytest.mark.parametrize(
    "overrides",
    [
        {"password": None},
        {"username": None},
        {"recipients": []},
        {"sender": "not-an-address"},
        {"sender": "a@example.kr, b@example.kr"},
        {"sender": "kmon@example.kr\r\nBcc: victim@example.com"},
        {"recipients": ["ok@example.kr", "감시\n<x@example.kr>"]},
        {"recipients": ["@example.kr"]},
        {"subject_prefix": "[kmon]\r\nBcc: victim@example.com"},
        {"host": "smtp.example.kr\r\n"},
        {"security": "ssl"},
        {"port": 0},
        {"timeout": 0},
        {"security": "none"},  # a password in clear text to a remote host
        {"smtp_user": "x"},
    ],
)
def test_config_refuses(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        EmailConfig.model_validate({**SETTINGS, **overrides})

    assert "pw" not in str(caught.value).replace("password", "")


def test_config_accepts_no_credentials_and_plain_smtp() -> None:
    settings = {k: v for k, v in SETTINGS.items() if k not in ("username", "password")}

    cfg = EmailConfig.model_validate({**settings, "security": "none"})

    assert cfg.username is None and cfg.password is None
    assert cfg.smtp_port == 25


def test_parse_address_keeps_korean_display_names() -> None:
    address = parse_address("코스피 감시 <kmon@example.kr>")

    assert (address.display_name, address.addr_spec) == ("코스피 감시", "kmon@example.kr")


# -- sending -------------------------------------------------------------------


async def test_delivers_over_starttls_with_auth(smtp_starttls: SmtpServer) -> None:
    channel = EmailChannel("ops-mail", EmailConfig.model_validate(smtp_starttls.email_config()))

    sent = await channel.send(message())

    assert sent.detail.startswith("250 ")
    assert "queued as kmon-1" in sent.detail
    assert sent.extra == {}
    [delivery] = await smtp_starttls.wait_for(1)
    assert delivery.tls
    assert delivery.login == USERNAME
    assert delivery.mail_from == "kmon@example.kr"
    assert delivery.rcpt_tos == ("hong@example.kr", "ops@example.com")
    mail = delivery.message()
    assert mail["Subject"] == "[kmon] [CRITICAL] 과기정통부, 소버린 AI 육성 전략 발표"
    assert mail["From"].addresses[0].display_name == "코스피 감시"
    assert mail["Message-ID"] == "<policy=3A1@example.kr>"
    assert [part.get_content_type() for part in mail.iter_parts()] == ["text/plain", "text/html"]
    text, _ = bodies(mail)
    assert "과기정통부, 소버린 AI 육성 전략 발표" in text


async def test_delivers_over_implicit_tls(smtp_tls: SmtpServer) -> None:
    channel = EmailChannel("ops-mail", EmailConfig.model_validate(smtp_tls.email_config()))

    sent = await channel.send(message())

    assert sent.detail.startswith("250 ")
    [delivery] = await smtp_tls.wait_for(1)
    assert delivery.tls
    assert delivery.login == USERNAME
    assert delivery.message()["From"].addresses[0].display_name == "코스피 감시"


async def test_an_injected_bcc_reaches_nobody(smtp_starttls: SmtpServer) -> None:
    channel = EmailChannel("ops-mail", EmailConfig.model_validate(smtp_starttls.email_config()))
    sneaky = replace(NEWS, title="속보\r\nBcc: victim@example.com")

    await channel.send(message(sneaky))

    [delivery] = await smtp_starttls.wait_for(1)
    assert delivery.rcpt_tos == ("hong@example.kr", "ops@example.com")
    mail = delivery.message()
    assert mail["Bcc"] is None
    assert "victim@example.com" not in [a.addr_spec for a in mail["To"].addresses]
    assert b"\r\nBcc:" not in delivery.data


async def test_two_updates_of_a_story_arrive_threaded(smtp_starttls: SmtpServer) -> None:
    channel = EmailChannel("ops-mail", EmailConfig.model_validate(smtp_starttls.email_config()))

    await channel.send(message(NEWS, key="first"))
    await channel.send(message(replace(NEWS, id=2, title="후속 보도"), key="second"))

    first, second = (d.message() for d in await smtp_starttls.wait_for(2))
    assert first["In-Reply-To"] == second["In-Reply-To"] == "<story-story-42@example.kr>"
    assert first["References"] == second["References"]
    assert first["Message-ID"] != second["Message-ID"]


async def test_a_refused_connection_is_transient(closed_port: int) -> None:
    cfg = EmailConfig.model_validate({**SETTINGS, "host": "127.0.0.1", "port": closed_port})

    with pytest.raises(TransientError) as caught:
        await EmailChannel("ops-mail", cfg).send(message())

    assert caught.value.key == "smtp_connect"
    assert f"127.0.0.1:{closed_port}" in str(caught.value)


async def test_a_silent_server_times_out(silent_port: int) -> None:
    cfg = EmailConfig.model_validate(
        {**SETTINGS, "host": "127.0.0.1", "port": silent_port, "timeout": 0.2}
    )

    with pytest.raises(TransientError) as caught:
        await EmailChannel("ops-mail", cfg).send(message())

    assert caught.value.key == "timeout"


@pytest.mark.parametrize(
    ("command", "reply", "key"),
    [
        ("DATA", "451 4.3.0 Temporary local problem, try later", "smtp_451"),
        ("MAIL", "421 4.7.0 Too many connections, closing", "smtp_421"),
        ("RCPT", "450 4.2.1 Mailbox busy", "smtp_450"),
    ],
)
async def test_temporary_refusals_are_transient(
    smtp_starttls: SmtpServer, command: str, reply: str, key: str
) -> None:
    smtp_starttls.fail_next(command, reply)
    if command == "RCPT":  # every recipient has to be refused for the send to fail
        smtp_starttls.fail_next(command, reply)
    channel = EmailChannel("ops-mail", EmailConfig.model_validate(smtp_starttls.email_config()))

    with pytest.raises(TransientError) as caught:
        await channel.send(message())

    assert caught.value.key == key
    assert reply.split(" ", 2)[2] in str(caught.value)
    assert smtp_starttls.deliveries == []


@pytest.mark.parametrize(
    ("command", "reply", "key"),
    [
        ("RCPT", "550 5.1.1 No such user here", "smtp_550"),
        ("DATA", "554 5.7.1 Message rejected as spam", "smtp_554"),
        ("MAIL", "553 5.7.1 Sender address rejected", "smtp_553"),
    ],
)
async def test_permanent_refusals_are_permanent(
    smtp_starttls: SmtpServer, command: str, reply: str, key: str
) -> None:
    smtp_starttls.fail_next(command, reply)
    if command == "RCPT":
        smtp_starttls.fail_next(command, reply)
    channel = EmailChannel("ops-mail", EmailConfig.model_validate(smtp_starttls.email_config()))

    with pytest.raises(PermanentError) as caught:
        await channel.send(message())

    assert type(caught.value) is PermanentError
    assert caught.value.key == key
    assert smtp_starttls.deliveries == []


async def test_one_refused_recipient_does_not_fail_the_others(smtp_starttls: SmtpServer) -> None:
    smtp_starttls.fail_next("RCPT", "550 5.1.1 No such user here")
    channel = EmailChannel("ops-mail", EmailConfig.model_validate(smtp_starttls.email_config()))

    sent = await channel.send(message())

    assert sent.detail.startswith("250 ")
    assert sent.extra == {"refused": "hong@example.kr (550 5.1.1 No such user here)"}
    [delivery] = await smtp_starttls.wait_for(1)
    assert delivery.rcpt_tos == ("ops@example.com",)


async def test_a_wrong_password_is_an_auth_error(smtp_starttls: SmtpServer) -> None:
    cfg = EmailConfig.model_validate(smtp_starttls.email_config(password="wrong-" + PASSWORD))

    with pytest.raises(AuthError) as caught:
        await EmailChannel("ops-mail", cfg).send(message())

    assert caught.value.key == "smtp_535"
    assert PASSWORD not in str(caught.value)
    assert smtp_starttls.deliveries == []


async def test_an_untrusted_certificate_is_a_tls_error(smtp_tls: SmtpServer) -> None:
    # Without the test CA, the system store does not trust the server's certificate.
    cfg = EmailConfig.model_validate(smtp_tls.email_config(ca_file=None))

    with pytest.raises(TransientError) as caught:
        await EmailChannel("ops-mail", cfg).send(message())

    assert caught.value.key == "tls"


async def test_an_untrusted_certificate_is_accepted_when_validation_is_off(
    smtp_starttls: SmtpServer,
) -> None:
    cfg = EmailConfig.model_validate(smtp_starttls.email_config(ca_file=None, validate_certs=False))

    sent = await EmailChannel("ops-mail", cfg).send(message())

    assert sent.detail.startswith("250 ")


async def test_a_missing_ca_file_is_permanent(smtp_starttls: SmtpServer, tmp_path: Any) -> None:
    cfg = EmailConfig.model_validate(
        smtp_starttls.email_config(ca_file=str(tmp_path / "missing.pem"))
    )

    with pytest.raises(PermanentError) as caught:
        await EmailChannel("ops-mail", cfg).send(message())

    assert caught.value.key == "tls_config"
