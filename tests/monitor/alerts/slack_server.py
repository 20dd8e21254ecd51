"""A real local HTTP server that plays Slack's incoming-webhook endpoint in tests.

It is strict where Slack is strict: every POST is checked against the documented
Block Kit limits (:func:`slack_problems`) and a payload that breaks one is answered
``400 invalid_blocks`` (``invalid_payload`` when it is not a JSON object with
``text`` or ``blocks``), so a test that expects ``200 ok`` also proves the renderer
stayed within the limits. It is stricter than Slack in one way: any ``<…>`` in
mrkdwn other than an http(s) link, and any ``&`` that does not start ``&amp;``,
``&lt;`` or ``&gt;``, counts as a problem, because kmon never writes mentions and
escapes everything else.

Use the ``slack_server`` fixture of ``tests/monitor/alerts/conftest.py``, or
:func:`running_slack_server` in a fixture of your own::

    async def test_retry_after(slack_server: SlackWebhookServer) -> None:
        slack_server.fail_next(rate_limited("30"))
        ...
        [post] = await slack_server.wait_for(1)

Faults are scripted as a queue: each POST takes the next :class:`Fault`, if any, and
answers with it instead of ``200 ok`` (the payload is still recorded and checked).
A hanging fault holds the request until the server closes. ``wait_for(n)`` returns
once ``n`` POSTs have arrived, without sleeping.

The same server plays the Web API a bot uses (under ``/api/``, :data:`BOT_TOKEN`):
``files.getUploadURLExternal`` hands out an upload URL on this server, the bytes
POSTed there are kept (:attr:`SlackWebhookServer.uploads`), ``files.completeUploadExternal``
checks that the file was uploaded first, and ``chat.postMessage`` checks its blocks as
the webhook does and that every image block names a completed file. Each call is
recorded in order (:attr:`SlackWebhookServer.api_calls`); ``fail_api(method, error)``
answers the next call of a method with ``ok: false`` (or a bare HTTP status).

PYTEST_DONT_REWRITE: test modules import their helpers from here.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

__all__ = [
    "BOT_TOKEN",
    "HANG",
    "WEBHOOK_PATH",
    "WEBHOOK_SECRET",
    "ApiCall",
    "Fault",
    "Received",
    "SlackWebhookServer",
    "links_in",
    "mrkdwn_problems",
    "rate_limited",
    "refused",
    "running_slack_server",
    "server_error",
    "slack_problems",
]

# The secret part of a webhook URL, to check that it never reaches an error message.
WEBHOOK_SECRET = "test-secret-token-4f2a"
WEBHOOK_PATH = f"/services/T0KMON000/B0KMON000/{WEBHOOK_SECRET}"
BOT_TOKEN = "xoxb-test-kmon-bot-7c1d"

# Documented limits (docs.slack.dev, Block Kit reference).
MAX_BLOCKS = 50
MAX_TEXT_OBJECT = 3000
MAX_HEADER_TEXT = 150
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_BLOCK_ID = 255
MAX_TOP_TEXT = 40_000
# Observed, not documented: Slack answers msg_blocks_too_long near 13,000 characters
# of block text (slackapi/bolt-js#2509).
MAX_BLOCKS_TEXT = 13_000

KNOWN_BLOCKS = {
    "actions",
    "context",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "markdown",
    "rich_text",
    "section",
    "video",
}
KNOWN_TOP_LEVEL = {
    "text",
    "blocks",
    "attachments",
    "thread_ts",
    "mrkdwn",
    "unfurl_links",
    "unfurl_media",
    "username",
    "icon_emoji",
    "icon_url",
    "metadata",
}

_LINK = re.compile(r"^https?://[^\s|<>]+(\|[^<>]*)?$")
_ENTITY = re.compile(r"&(amp|lt|gt);")


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted answer in place of ``200 ok``; ``hang`` holds the request instead."""

    status: int = 500
    body: str = "rollup_error"
    headers: Mapping[str, str] | None = None
    hang: bool = False


HANG = Fault(hang=True)


def rate_limited(retry_after: str = "30") -> Fault:
    """429 with a Retry-After header, as Slack rate-limits webhooks."""
    return Fault(429, "rate_limited", {"Retry-After": retry_after})


def server_error(status: int = 500, body: str = "rollup_error") -> Fault:
    """A 5xx answer."""
    return Fault(status, body)


def refused(status: int, body: str) -> Fault:
    """A 4xx answer such as 404 ``no_service`` or 410 ``channel_is_archived``."""
    return Fault(status, body)


@dataclass(frozen=True, slots=True)
class Received:
    """One POST: its raw body, the parsed JSON (None if not JSON), the problems found
    against Slack's limits, and the answer given."""

    path: str
    content_type: str
    body: bytes
    payload: Any
    problems: tuple[str, ...]
    status: int
    answer: str


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One Web API call (or upload, ``method`` "upload"): its parameters (query, form
    and JSON merged), whether it carried :data:`BOT_TOKEN`, and the answer given."""

    method: str
    params: dict[str, Any]
    body: bytes
    authorized: bool
    answer: dict[str, Any]


class SlackWebhookServer:
    """Slack's webhook endpoint (and a bot's Web API) on 127.0.0.1: checks, records
    and answers POSTs."""

    def __init__(self) -> None:
        self.api_calls: list[ApiCall] = []
        self.uploads: dict[str, bytes] = {}
        self._completed: set[str] = set()
        self._api_faults: dict[str, deque[str | int]] = {}
        self.received: list[Received] = []
        self._faults: deque[Fault] = deque()
        self._arrived = asyncio.Event()
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1")

    async def start(self) -> None:
        """Listen on a free port."""
        await self._server.start_server()

    async def close(self) -> None:
        """Release hanging requests, then stop the server."""
        self._release.set()
        await self._server.close()

    @property
    def url(self) -> str:
        """The webhook URL (its last path segment is :data:`WEBHOOK_SECRET`)."""
        return self.url_for(WEBHOOK_PATH)

    def url_for(self, path: str) -> str:
        return str(self._server.make_url(path))

    @property
    def api_url(self) -> str:
        """The Web API base URL, for ``api_url`` in the settings."""
        return self.url_for("/api/")

    def fail_api(self, method: str, *errors: str | int) -> None:
        """Answer the next calls of ``method`` ("upload" for the upload URL) with
        ``{"ok": false, "error": …}``, or with a bare HTTP status for an int."""
        self._api_faults.setdefault(method, deque()).extend(errors)

    def api_methods(self) -> list[str]:
        """The methods called, in order."""
        return [c.method for c in self.api_calls]

    async def _api(self, request: web.Request, method: str, file_id: str = "") -> web.Response:
        body = await request.read()
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/x-www-form-urlencoded":
            params.update(dict(await request.post()))
        elif request.content_type == "application/json" and body:
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                params.update(parsed)
        authorized = request.headers.get("Authorization") == f"Bearer {BOT_TOKEN}"
        faults = self._api_faults.get(method)
        fault = faults.popleft() if faults else None
        status = 200
        if method == "upload":
            answer: dict[str, Any] = {"ok": True}
        elif not authorized:
            answer = {"ok": False, "error": "invalid_auth"}
        else:
            answer = self._answer(method, params)
        if isinstance(fault, int):
            status, answer = fault, {"ok": False, "error": f"http_{fault}"}
        elif fault is not None:
            answer = {"ok": False, "error": fault}
        if method == "upload" and status == 200 and fault is None:
            self.uploads[file_id] = body
        self.api_calls.append(ApiCall(method, params, body, authorized, answer))
        self._arrived.set()
        if method == "upload":
            text = "OK" if answer.get("ok") else str(answer.get("error"))
            return web.Response(status=status if answer.get("ok") else max(status, 500), text=text)
        return web.json_response(answer, status=status)

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "files.getUploadURLExternal":
            if not params.get("filename") or not str(params.get("length", "")).isdigit():
                return {"ok": False, "error": "invalid_arguments"}
            file_id = f"F{len(self.uploads) + len(self.api_calls):08d}"
            return {
                "ok": True,
                "file_id": file_id,
                "upload_url": self.url_for(f"/upload/{file_id}"),
            }
        if method == "files.completeUploadExternal":
            files = json.loads(str(params.get("files", "[]")))
            ids = [f.get("id") for f in files if isinstance(f, dict)]
            if not ids or any(i not in self.uploads for i in ids):
                return {"ok": False, "error": "file_not_found"}
            self._completed.update(ids)
            return {
                "ok": True,
                "files": [
                    {"id": i, "name": f"{i}.png", "title": f.get("title")}
                    for i, f in zip(ids, files, strict=True)
                ],
            }
        if method == "chat.postMessage":
            message = {k: v for k, v in params.items() if k != "channel"}
            problems = slack_problems(message)
            for block in message.get("blocks") or []:
                if isinstance(block, dict) and block.get("type") == "image":
                    file_id = (block.get("slack_file") or {}).get("id")
                    if file_id not in self._completed:
                        problems.append(f"image block names {file_id!r}, not an uploaded file")
            if not params.get("channel"):
                return {"ok": False, "error": "channel_not_found"}
            if problems:
                return {"ok": False, "error": "invalid_blocks", "problems": problems}
            return {
                "ok": True,
                "channel": params["channel"],
                "ts": f"1750208000.{len(self.api_calls):06d}",
            }
        return {"ok": False, "error": "unknown_method"}

    @property
    def payloads(self) -> list[Any]:
        """The payloads answered ``200 ok``, in order."""
        return [r.payload for r in self.received if r.status == 200]

    def fail_next(self, *faults: Fault) -> None:
        """Answer the next POSTs with ``faults``, one each, then ``200 ok`` again."""
        self._faults.extend(faults)

    async def wait_for(self, count: int) -> list[Received]:
        """Wait until ``count`` POSTs have arrived (hanging ones included)."""
        while len(self.received) < count:
            self._arrived.clear()
            await self._arrived.wait()
        return self.received[:count]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            return await self._api(request, request.path.removeprefix("/api/"))
        if request.path.startswith("/upload/"):
            return await self._api(request, "upload", request.path.removeprefix("/upload/"))
        body = await request.read()
        payload: Any = None
        problems: list[str]
        try:
            payload = json.loads(body)
        except ValueError:
            problems = ["body is not JSON"]
        else:
            problems = slack_problems(payload)
        fault = self._faults.popleft() if self._faults else None
        if request.method != "POST" or request.path != WEBHOOK_PATH:
            status, answer, headers = 404, "no_service", None
        elif fault is not None:
            status, answer, headers = fault.status, fault.body, fault.headers
        elif problems:
            shape = problems[0].startswith(("body is not", "payload", "needs"))
            status, answer, headers = 400, "invalid_payload" if shape else "invalid_blocks", None
        else:
            status, answer, headers = 200, "ok", None
        self.received.append(
            Received(
                path=request.path,
                content_type=request.content_type,
                body=body,
                payload=payload,
                problems=tuple(problems),
                status=status if fault is None or not fault.hang else 0,
                answer=answer,
            )
        )
        self._arrived.set()
        if fault is not None and fault.hang:
            await self._release.wait()
            return web.Response(status=503, text="released")
        return web.Response(status=status, text=answer, headers=headers)


@asynccontextmanager
async def running_slack_server() -> AsyncIterator[SlackWebhookServer]:
    """A started :class:`SlackWebhookServer`, closed (hanging requests released) after."""
    server = SlackWebhookServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


# -- what Slack would refuse --------------------------------------------------


def slack_len(text: str) -> int:
    """UTF-16 code units: the stricter way of counting Slack's "characters"."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def slack_problems(payload: Any) -> list[str]:
    """Everything in ``payload`` that breaks Slack's documented limits or kmon's
    escaping rules; empty when the payload is fine."""
    if not isinstance(payload, dict):
        return ["payload is not a JSON object"]
    problems: list[str] = []
    unknown = set(payload) - KNOWN_TOP_LEVEL
    if unknown:
        problems.append(f"payload has unknown fields {sorted(unknown)}")
    text = payload.get("text")
    blocks = payload.get("blocks")
    if not (isinstance(text, str) and text) and not (isinstance(blocks, list) and blocks):
        return ["needs a non-empty text or blocks", *problems]
    if text is not None:
        if not isinstance(text, str):
            problems.append("text is not a string")
        else:
            if slack_len(text) > MAX_TOP_TEXT:
                problems.append(f"text is {slack_len(text)} > {MAX_TOP_TEXT} characters")
            problems.extend(f"text: {p}" for p in mrkdwn_problems(text))
    if blocks is not None:
        problems.extend(_blocks_problems(blocks))
    return problems


def _blocks_problems(blocks: Any) -> list[str]:
    if not isinstance(blocks, list):
        return ["blocks is not a list"]
    problems: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks > {MAX_BLOCKS}")
    total = 0
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        if not isinstance(block, dict):
            problems.append(f"{where} is not an object")
            continue
        kind = block.get("type")
        if kind not in KNOWN_BLOCKS:
            problems.append(f"{where} has unknown type {kind!r}")
            continue
        block_id = block.get("block_id")
        if block_id is not None and (not isinstance(block_id, str) or len(block_id) > 255):
            problems.append(f"{where}.block_id is not a string of at most {MAX_BLOCK_ID}")
        if kind == "header":
            problems.extend(
                _text_object_problems(
                    block.get("text"), f"{where}.text", MAX_HEADER_TEXT, kinds=("plain_text",)
                )
            )
            total += _text_len(block.get("text"))
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"{where} needs text or fields")
            if "text" in block:
                problems.extend(
                    _text_object_problems(block["text"], f"{where}.text", MAX_TEXT_OBJECT)
                )
                total += _text_len(block["text"])
            if "fields" in block:
                fields = block["fields"]
                if not isinstance(fields, list) or not 1 <= len(fields) <= MAX_FIELDS:
                    problems.append(f"{where}.fields must hold 1 to {MAX_FIELDS} text objects")
                else:
                    for n, item in enumerate(fields):
                        problems.extend(
                            _text_object_problems(item, f"{where}.fields[{n}]", MAX_FIELD_TEXT)
                        )
                        total += _text_len(item)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= MAX_CONTEXT_ELEMENTS:
                problems.append(f"{where}.elements must hold 1 to {MAX_CONTEXT_ELEMENTS} elements")
            else:
                for n, item in enumerate(elements):
                    if isinstance(item, dict) and item.get("type") == "image":
                        continue
                    problems.extend(
                        _text_object_problems(item, f"{where}.elements[{n}]", MAX_TEXT_OBJECT)
                    )
                    total += _text_len(item)
    if total > MAX_BLOCKS_TEXT:
        problems.append(f"msg_blocks_too_long: {total} characters of block text")
    return problems


def _text_len(obj: Any) -> int:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return slack_len(obj["text"])
    return 0


def _text_object_problems(
    obj: Any, where: str, limit: int, kinds: tuple[str, ...] = ("plain_text", "mrkdwn")
) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where} is not a text object"]
    kind = obj.get("type")
    if kind not in kinds:
        return [f"{where}.type is {kind!r}, not one of {kinds}"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"{where}.text must be a non-empty string"]
    problems: list[str] = []
    allowed = {"type", "text", "emoji"} if kind == "plain_text" else {"type", "text", "verbatim"}
    if set(obj) - allowed:
        problems.append(f"{where} has fields {sorted(set(obj) - allowed)} not allowed for {kind}")
    if slack_len(text) > limit:
        problems.append(f"{where}.text is {slack_len(text)} > {limit} characters")
    if kind == "mrkdwn":
        problems.extend(f"{where}: {p}" for p in mrkdwn_problems(text))
    return problems


def mrkdwn_problems(text: str) -> list[str]:
    """Angle-bracket sequences other than http(s) links, and raw ``&`` or ``>``."""
    problems: list[str] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char == "<":
            end = text.find(">", position + 1)
            inner = text[position + 1 : end] if end != -1 else text[position + 1 :]
            if end == -1 or "<" in inner:
                problems.append(f"unclosed '<' at {position}")
                break
            if not _LINK.match(inner):
                problems.append(f"not an http(s) link: <{inner[:80]}>")
            position = end + 1
            continue
        if char == ">":
            problems.append(f"raw '>' at {position}")
        elif char == "&" and not _ENTITY.match(text, position):
            problems.append(f"raw '&' at {position}")
        position += 1
    return problems


def links_in(text: str) -> list[tuple[str, str]]:
    """The ``(target, label)`` of every ``<target|label>`` link in mrkdwn ``text``."""
    found: list[tuple[str, str]] = []
    for match in re.finditer(r"<([^<>]*)>", text):
        target, _, label = match.group(1).partition("|")
        found.append((target, label))
    return found
