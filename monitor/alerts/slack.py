"""Slack: one alert message posted to an incoming webhook, or by a bot with its charts.

Rendering (:func:`render_slack`) is a pure function from an :class:`AlertMessage` to
the documented webhook JSON: Block Kit ``blocks`` plus a plain ``text`` fallback that
Slack shows in notifications. Sending (:class:`SlackChannel`) is one POST.

Escaping. Slack gives ``&``, ``<`` and ``>`` special meaning in mrkdwn and asks
senders to write them as ``&amp;``, ``&lt;`` and ``&gt;`` — only those three
(docs.slack.dev, "Formatting text"). Every string that came from a feed or a rule
(title, source, subject, terms, why, the URL) passes through :func:`escape_mrkdwn`,
which also folds the text onto one line and drops control and bidi-override
characters, so a headline cannot start a block quote, forge a line of our layout or
hide text. With ``<`` escaped, ``<!channel>``, ``<!here>``, ``<@U123>`` and
``<http://evil|trusted>`` arrive as inert text; every mrkdwn text object is also
sent with ``"verbatim": true`` so Slack does not auto-link bare URLs or auto-parse
names in untrusted text. The only ``<…>`` sequence in a message is a link we write
ourselves, ``<url|title>``, and only for http(s) URLs, with the URL percent-encoded
(``|``, ``<``, ``>``, spaces, quotes, controls, non-ASCII) so it cannot close the
link early or smuggle a label. ``*``, ``_``, ``~`` and backticks are left alone: in
mrkdwn they only change emphasis, they cannot link, mention or notify anyone, and
escaping them would need look-alike characters in Korean and English headlines.

Limits (Block Kit reference, docs.slack.dev): at most 50 blocks a message; section
and context text objects 1–3000 characters; a header 150 characters of
``plain_text``; at most 10 context elements; the top-level ``text`` is truncated by
Slack beyond 40,000 characters. Slack has also been seen to refuse messages whose
blocks hold ~13,000 characters in total (``msg_blocks_too_long``, undocumented;
slackapi/bolt-js#2509), so the blocks of one message share a 10,000-character
budget. Untrusted fields are cut to fixed budgets before they are joined, so a
section can never exceed its limit; signals that do not fit are summed up as "and N
more" in the closing context line. Lengths are counted in UTF-16 code units, the
stricter of the two ways a "character" may be counted, so emoji cannot push a text
over a limit.

Charts need a bot (``token`` and ``channel``): an incoming webhook can only post
JSON, never upload a file, so a webhook channel sends the message as it always has,
without images. With a token, :class:`BotPoster` uploads each chart with slack_sdk's
``files_upload_v2`` and posts the message with an image block per uploaded file.

Why aiohttp rather than slack_sdk's ``AsyncWebhookClient``: that client accepts a
session, but applies its timeout only to sessions it creates itself, logs the
webhook URL (a credential) at debug level and has retry handlers of its own, while
kmon's outbox already owns retries. A POST of documented JSON is a few lines.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import structlog

from adapters.errors import AuthError, FetchError, PermanentError, TransientError
from adapters.http import parse_retry_after
from adapters.text import one_line, reason_of
from monitor.alerting import SlackConfig
from monitor.alerts.message import (
    AlertMessage,
    AlertSignal,
    MoveLine,
    Sent,
    event_time_text,
    message_notes,
    move_figures,
    web_url,
)
from monitor.severity import most_severe

log = structlog.get_logger("kmon.alerts")

__all__ = [
    "MAX_BLOCKS",
    "MAX_CONTEXT_ELEMENTS",
    "MAX_HEADER_TEXT",
    "MAX_SECTION_TEXT",
    "MAX_TEXT",
    "SlackChannel",
    "SlackConfig",
    "escape_mrkdwn",
    "link_target",
    "render_slack",
    "slack_len",
]

# Documented Block Kit limits.
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_TEXT = 40_000
# Observed, not documented (see the module docstring): stay well below ~13,000.
BLOCKS_TEXT_BUDGET = 10_000

# Budgets for the parts of one signal's section, after escaping. Their sum, with the
# fixed labels, stays under MAX_SECTION_TEXT whatever the input.
_TITLE_MAX = 400
_URL_MAX = 1000  # a longer (encoded) URL is shown unlinked rather than cut
_NAME_MAX = 100
_WHY_MAX = 400
_RULE_MAX = 100
_TERMS_MAX = 300
_SOURCE_MAX = 150
_SUBJECT_MAX = 100

_BODY_MAX = 4096  # of Slack's answer; it is a short word like "ok" or "no_service"
_REASON_MAX = 200

_SEVERITY_ICON = {"info": "ℹ️", "warning": "⚠️", "critical": "🚨"}

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_ESCAPE_TABLE = str.maketrans(_ENTITIES)
# Kept as they are in a link target; everything else is percent-encoded. "|", "<",
# ">", space, quotes, backslash, controls and non-ASCII are not in the list.
_URL_SAFE = "/:?#[]@!$&'()*+,;=%~-._"


# -- configuration ------------------------------------------------------------


# -- escaping -----------------------------------------------------------------


def slack_len(text: str) -> int:
    """Length as Slack may count it: UTF-16 code units (an emoji can count two)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def escape_mrkdwn(text: str, limit: int | None = None) -> str:
    """Untrusted ``text`` made inert for mrkdwn: one line, ``&<>`` as entities.

    With ``limit``, the escaped result is at most that long (UTF-16 units) and ends
    in "…" when cut; the cut never splits an entity.
    """
    clean = one_line(text)
    escaped = clean.translate(_ESCAPE_TABLE)
    if limit is None or slack_len(escaped) <= limit:
        return escaped
    pieces: list[str] = []
    size = 0
    budget = limit - 1  # room for the ellipsis
    for ch in clean:
        piece = _ENTITIES.get(ch, ch)
        width = slack_len(piece)
        if size + width > budget:
            break
        pieces.append(piece)
        size += width
    return "".join(pieces).rstrip() + "…"


def link_target(url: str | None) -> str | None:
    """The URL as it may appear inside ``<…|…>``, or None when it must not be linked.

    Only absolute http(s) URLs with a host are linked; ``javascript:``, ``data:``,
    relative and malformed URLs are not. Characters that could end the link or its
    label are percent-encoded and ``&`` is written as ``&amp;``, as Slack asks.
    """
    candidate = web_url(url)
    if candidate is None:
        return None
    target = quote(candidate, safe=_URL_SAFE).replace("&", "&amp;")
    return target if slack_len(target) <= _URL_MAX else None


def _truncate_plain(text: str, limit: int) -> str:
    """Our own text (no entities to split) cut to ``limit`` UTF-16 units."""
    if slack_len(text) <= limit:
        return text
    out: list[str] = []
    size = 0
    for ch in text:
        width = slack_len(ch)
        if size + width > limit - 1:
            break
        out.append(ch)
        size += width
    return "".join(out).rstrip() + "…"


# -- rendering ----------------------------------------------------------------


def render_slack(message: AlertMessage) -> dict[str, Any]:
    """The incoming-webhook payload for ``message``: ``text``, ``blocks`` and flags.

    One header, one section per signal that fits, and a closing context line for
    what did not fit ("and N more"), what the throttle folded in, digests and test
    messages. Within every documented limit whatever the input (see module doc).
    """
    signals = message.signals
    header = _header_block(message)
    closing_reserved = 1  # the closing context block, always room for it
    budget = BLOCKS_TEXT_BUDGET - slack_len(header["text"]["text"]) - 600  # closing line
    sections: list[dict[str, Any]] = []
    for signal in signals:
        if 1 + len(sections) + closing_reserved >= MAX_BLOCKS:
            break
        text = _section_text(signal)
        cost = slack_len(text)
        if cost > budget:
            break
        budget -= cost
        sections.append(_mrkdwn_section(text))
    shown = len(sections)
    hidden = len(signals) - shown

    blocks: list[dict[str, Any]] = [header, *sections]
    notes = _closing_notes(message, hidden)
    if notes:
        blocks.append(
            {
                "type": "context",
                "elements": [_mrkdwn(note) for note in notes[:MAX_CONTEXT_ELEMENTS]],
            }
        )
    return {
        "text": _fallback_text(message),
        "blocks": blocks,
        # Do not make Slack fetch untrusted pages for previews.
        "unfurl_links": False,
        "unfurl_media": False,
    }


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _mrkdwn_section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _severity_of(signals: Sequence[AlertSignal]) -> str:
    """The highest severity among ``signals``; an unknown word counts as info."""
    return most_severe([s.severity for s in signals])


def _icon(severity: str) -> str:
    return _SEVERITY_ICON.get(severity, _SEVERITY_ICON["info"])


def _header_block(message: AlertMessage) -> dict[str, Any]:
    # Only our own words in the header: plain_text is shown as-is, untrusted text
    # belongs in the escaped sections.
    severity = _severity_of(message.signals)
    count = len(message.signals) + message.folded
    if message.digest:
        text = f"📬 kmon digest · {count} signal{'s' if count != 1 else ''}"
    elif count > 1:
        text = f"{_icon(severity)} {severity.upper()} · {count} signals"
    else:
        text = f"{_icon(severity)} {severity.upper()} · kmon alert"
    if message.test:
        text = f"[TEST] {text}"
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": _truncate_plain(text, MAX_HEADER_TEXT)},
    }


def _headline(signal: AlertSignal, limit: int = _TITLE_MAX) -> str:
    title = escape_mrkdwn(signal.title, limit) or escape_mrkdwn(signal.subject, limit)
    title = title or "(no title)"
    target = link_target(signal.url)
    if target is None:
        return title
    return f"<{target}|{title}>"


def _move_text(move: MoveLine) -> str:
    name = escape_mrkdwn(move.name, _NAME_MAX) if move.name else ""
    ticker = escape_mrkdwn(move.ticker, _NAME_MAX)
    parts = [f"*{name}* ({ticker})" if name else f"*{ticker}*"]
    parts.extend(move_figures(move))
    return " ".join(parts)


def _why_text(signal: AlertSignal) -> str:
    parts: list[str] = []
    if signal.why:
        parts.append(escape_mrkdwn(signal.why, _WHY_MAX))
    # A backtick would end the code span early; rule ids are ours but not trusted.
    rule = escape_mrkdwn(signal.rule_id.replace("`", "'"), _RULE_MAX)
    parts.append(f"rule `{rule}`")
    if signal.terms:
        terms = escape_mrkdwn(", ".join(signal.terms), _TERMS_MAX)
        parts.append(f"terms: {terms}")
    return "*Why:* " + " · ".join(parts)


def _section_text(signal: AlertSignal) -> str:
    lines = [f"{_icon(signal.severity)} *{_headline(signal)}*"]
    if signal.move is not None:
        lines.append(_move_text(signal.move))
    lines.append(_why_text(signal))
    meta = []
    if signal.subject:
        meta.append(escape_mrkdwn(signal.subject, _SUBJECT_MAX))
    if signal.source:
        meta.append(escape_mrkdwn(signal.source, _SOURCE_MAX))
    meta.append(event_time_text(signal.event_time))
    lines.append(" · ".join(meta))
    text = "\n".join(lines)
    # The budgets above make this unreachable; keep the limit even if they drift.
    if slack_len(text) > MAX_SECTION_TEXT:
        text = f"{_icon(signal.severity)} *{_headline(signal, 200)}*"
    return text


def _closing_notes(message: AlertMessage, hidden: int) -> list[str]:
    notes: list[str] = []
    if hidden > 0:
        notes.append(f"and {hidden} more not shown (kmon signals list)")
    notes.extend(message_notes(message))
    if notes and message.route:
        notes.append(f"route: {escape_mrkdwn(message.route, 100)}")
    return notes


def _fallback_line(signal: AlertSignal) -> str:
    line = f"{_icon(signal.severity)} {_headline(signal)}"
    if signal.move is not None:
        line += f" — {_move_text(signal.move)}"
    elif signal.subject:
        line += f" — {escape_mrkdwn(signal.subject, _SUBJECT_MAX)}"
    return line


def _fallback_text(message: AlertMessage) -> str:
    """What notifications and clients without Block Kit show: the same, in lines."""
    severity = _severity_of(message.signals)
    count = len(message.signals) + message.folded
    prefix = "[TEST] " if message.test else ""
    if message.digest:
        head = f"{prefix}kmon digest: {count} signal{'s' if count != 1 else ''}"
    elif len(message.signals) == 1 and message.folded == 0:
        return prefix + _fallback_line(message.signals[0])
    else:
        head = f"{prefix}kmon {severity.upper()}: {count} signals"
    lines = [head]
    size = slack_len(head)
    reserve = 200  # for the closing lines
    for index, signal in enumerate(message.signals):
        line = "• " + _fallback_line(signal)
        cost = slack_len(line) + 1
        if size + cost > MAX_TEXT - reserve:
            lines.append(f"and {len(message.signals) - index} more")
            break
        lines.append(line)
        size += cost
    if message.folded > 0:
        lines.append(f"+{message.folded} more folded in by the throttle (kmon signals list)")
    return "\n".join(lines)


# -- sending ------------------------------------------------------------------


class SlackChannel:
    """Posts each message to Slack through the shared session: to an incoming webhook,
    or, with a bot token, with ``chat.postMessage`` after uploading its charts."""

    def __init__(self, name: str, config: SlackConfig, session: aiohttp.ClientSession) -> None:
        self.name = name
        self._config = config
        self._session = session
        self._bot: BotPoster | None = None
        if config.token is not None and config.channel is not None:
            self._bot = BotPoster(config, session)
            self.shows_charts = True
            return
        assert config.webhook_url is not None  # SlackConfig asks for one or the other
        self.shows_charts = False  # a webhook cannot upload a file
        host = urlsplit(config.webhook_url.get_secret_value()).hostname or "?"
        # What errors may name: the host, never the path (which is the secret).
        self._where = f"slack webhook ({host})"

    async def send(self, message: AlertMessage) -> Sent:
        """Post ``message``; raise TransientError / PermanentError as the answer says."""
        if self._bot is not None:
            return await self._bot.send(message)
        assert self._config.webhook_url is not None
        payload = render_slack(message)
        if self._config.username:
            payload["username"] = self._config.username
        timeout = aiohttp.ClientTimeout(total=self._config.timeout)
        where = self._where
        # Every error is raised "from None": aiohttp's own exceptions may carry the
        # request URL, and a logged traceback must not show the secret.
        try:
            async with self._session.post(
                self._config.webhook_url.get_secret_value(),
                json=payload,
                timeout=timeout,
                allow_redirects=False,
                raise_for_status=False,
            ) as resp:
                status = resp.status
                body = await _read_capped(resp)
                retry_after_header = resp.headers.get("Retry-After")
        except TimeoutError:
            raise TransientError(
                "timeout", f"{where}: no answer within {self._config.timeout:g}s"
            ) from None
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            reason = reason_of(getattr(exc, "os_error", exc), _REASON_MAX)
            raise TransientError("tls", f"{where}: TLS failed ({reason})") from None
        except aiohttp.ClientConnectorError as exc:
            reason = reason_of(exc.os_error, _REASON_MAX)
            raise TransientError("connect", f"{where}: cannot connect ({reason})") from None
        except aiohttp.ServerDisconnectedError:
            raise TransientError(
                "disconnected", f"{where}: server closed the connection without answering"
            ) from None
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError):
            raise PermanentError("bad_url", f"{where}: not a usable webhook URL") from None
        except aiohttp.ClientError as exc:
            raise TransientError(
                "client", f"{where}: request failed ({type(exc).__name__})"
            ) from None
        except OSError as exc:
            raise TransientError(
                "connect", f"{where}: network error ({reason_of(exc, _REASON_MAX)})"
            ) from None
        return _answer(status, body, retry_after_header, where)

    async def close(self) -> None:
        """Nothing to release: the HTTP session belongs to the caller."""


# Web API errors after which the same message can never go through as it is.
_BOT_AUTH_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "missing_scope",
        "no_permission",
        "ekm_access_denied",
    }
)
_BOT_PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_blocks",
        "msg_too_long",
        "no_text",
        "too_many_attachments",
        "invalid_arguments",
        "restricted_action",
        "msg_blocks_too_long",
        "invalid_blocks_format",
    }
)


class BotPoster:
    """A Slack bot's way in: charts uploaded with slack_sdk's ``files_upload_v2`` (the
    external-upload flow: files.getUploadURLExternal, the bytes to the URL it gives,
    files.completeUploadExternal), then the message with ``chat.postMessage``, each
    chart an image block naming its uploaded file.

    An upload that fails is logged and counted (``Sent.image_failures``) and the
    message goes out without that image: a chart never holds back an alert. slack_sdk
    runs on the daemon's shared session with its own retries switched off (kmon's
    outbox owns retries) and each call bounded by ``timeout`` here, since the client
    applies its own timeout only to sessions it creates.
    """

    def __init__(self, config: SlackConfig, session: aiohttp.ClientSession) -> None:
        from slack_sdk.web.async_client import AsyncWebClient

        assert config.token is not None and config.channel is not None
        self._config = config
        self._channel = config.channel
        self._client = AsyncWebClient(
            token=config.token.get_secret_value(),
            base_url=config.api_url,
            timeout=int(max(1, config.timeout)),
            session=session,
            retry_handlers=[],
        )
        host = urlsplit(config.api_url).hostname or "?"
        self._where = f"slack api ({host})"

    async def send(self, message: AlertMessage) -> Sent:
        from slack_sdk.errors import SlackApiError, SlackClientError

        failures = 0
        images: list[dict[str, Any]] = []
        for chart in message.charts:
            try:
                async with asyncio.timeout(self._config.timeout):
                    done = await self._client.files_upload_v2(
                        file=chart.png,
                        filename=chart.filename,
                        title=chart.caption,
                        alt_txt=chart.caption,
                    )
                file_id = str((done.get("file") or {}).get("id") or "")
                if not file_id:
                    raise SlackClientError("no file id in the answer")
            except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                failures += 1
                log.warning(
                    "chart_upload_failed",
                    channel=self._channel,
                    signal=chart.signal_id,
                    error=_slack_reason(exc),
                )
                continue
            images.append(
                {
                    "type": "image",
                    "slack_file": {"id": file_id},
                    "alt_text": chart.caption[:2000],
                    "title": {"type": "plain_text", "text": chart.caption[:MAX_HEADER_TEXT]},
                }
            )
        payload = render_slack(message)
        blocks = list(payload.get("blocks", []))
        room = MAX_BLOCKS - len(blocks)
        payload["blocks"] = blocks + images[: max(0, room)]
        if self._config.username:
            payload["username"] = self._config.username
        try:
            async with asyncio.timeout(self._config.timeout):
                answer = await self._client.chat_postMessage(channel=self._channel, **payload)
        except SlackApiError as exc:
            raise _bot_error(exc, self._where) from None
        except TimeoutError:
            raise TransientError(
                "timeout", f"{self._where}: no answer within {self._config.timeout:g}s"
            ) from None
        except (SlackClientError, aiohttp.ClientError, OSError) as exc:
            raise TransientError(
                "client", f"{self._where}: request failed ({_slack_reason(exc)})"
            ) from None
        ts = str(answer.get("ts") or "")
        extra = {"ts": ts} if ts else {}
        if images:
            extra["files"] = ",".join(i["slack_file"]["id"] for i in images)
        return Sent(detail=f"200 ok {ts}".strip(), extra=extra, image_failures=failures)


def _slack_reason(exc: BaseException) -> str:
    from slack_sdk.errors import SlackApiError

    if isinstance(exc, SlackApiError):
        return one_line(str(exc.response.get("error") or "error"), _REASON_MAX)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return one_line(f"{type(exc).__name__}: {exc}", _REASON_MAX)


def _bot_error(exc: Any, where: str) -> FetchError:
    """The error family member for a Web API answer with ``ok: false``."""
    status = int(getattr(exc.response, "status_code", 0) or 0)
    code = one_line(str(exc.response.get("error") or "error"), _REASON_MAX)
    what = f"{where}: {code}"
    if status == 429 or code == "ratelimited":
        headers = getattr(exc.response, "headers", {}) or {}
        retry_after = parse_retry_after(headers.get("Retry-After"), now=datetime.now(UTC))
        if retry_after is not None:
            what += f" (retry after {retry_after:g}s)"
        return TransientError("ratelimited", what, http_status=429, retry_after=retry_after)
    if code in _BOT_AUTH_ERRORS:
        return AuthError(f"slack_{code}", what, http_status=status or None)
    if code in _BOT_PERMANENT_ERRORS:
        return PermanentError(f"slack_{code}", what, http_status=status or None)
    return TransientError(f"slack_{code}", what, http_status=status or None)


async def _read_capped(resp: aiohttp.ClientResponse) -> str:
    data = bytearray()
    async for chunk in resp.content.iter_chunked(1024):
        data += chunk
        if len(data) >= _BODY_MAX:
            break
    return one_line(bytes(data[:_BODY_MAX]).decode("utf-8", errors="replace"), _REASON_MAX)


def _answer(status: int, body: str, retry_after_header: str | None, where: str) -> Sent:
    """Sent for 2xx; otherwise raise the error that says whether to retry."""
    if 200 <= status < 300:
        return Sent(detail=f"{status} {body}".strip())
    error: FetchError
    key = f"http_{status}"
    what = f"{where}: HTTP {status}" + (f" {body}" if body else "")
    if status == 429 or status == 503:
        retry_after = parse_retry_after(retry_after_header, now=datetime.now(UTC))
        if retry_after is not None:
            what += f" (retry after {retry_after:g}s)"
        error = TransientError(key, what, http_status=status, retry_after=retry_after)
    elif status >= 500 or status == 408:
        error = TransientError(key, what, http_status=status)
    elif status in (401, 403):
        # invalid_token, action_prohibited: the webhook was revoked or is refused.
        error = AuthError(key, what, http_status=status)
    elif 300 <= status < 400:
        error = PermanentError(key, f"{what} (webhooks do not redirect)", http_status=status)
    elif 400 <= status < 500:
        # invalid_payload, invalid_blocks, no_service, channel_not_found, channel_is_archived
        error = PermanentError(key, what, http_status=status)
    else:
        error = TransientError(key, f"{what} (unexpected status)", http_status=status)
    raise error
