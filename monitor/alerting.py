"""Alert settings: the channels, the routes from signals to channels, and pacing.

A route picks signals (kind, severity, rule, ticker) and names the channels they go
to, with its own pacing: a group wait (signals arriving within it share one
message), a throttle (at most N messages per window; the rest are folded into the
next one), repeat suppression, and quiet hours in Korean time that hold non-critical
alerts and send them as one digest when they end. An optional daily digest sends a
day's signals to one channel at a fixed KST time.

With nothing configured, one ``console`` channel gets every signal; with channels
but no routes, one route sends every signal to every channel.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from email.headerregistry import Address
from email.policy import SMTP as SMTP_POLICY
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from adapters.netloc import is_loopback_host
from adapters.text import CONTROL
from monitor.kinds import SignalKind as Kind
from monitor.severity import SEVERITY_RANK, Severity
from monitor.timefmt import KST, bounded_duration, parse_duration

# The route name of the rows the daily digest writes; no configured route may use it.
DIGEST_ROUTE = "daily-digest"
DEFAULT_ROUTE = "default"


_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_HHMM = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


Seconds = Annotated[
    float, BeforeValidator(parse_duration), AfterValidator(bounded_duration), Field(gt=0)
]
Wait = Annotated[
    float, BeforeValidator(parse_duration), AfterValidator(bounded_duration), Field(ge=0)
]


# -- channels -------------------------------------------------------------------


class SlackConfig(BaseModel):
    """A Slack channel: an incoming webhook (``webhook_url``), or a bot (``token`` and
    ``channel``), which can also upload charts. The webhook URL and the token are
    credentials: they are never shown or logged. ``api_url`` is Slack's Web API."""

    # A validation error must not print the webhook URL it was given.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: Literal["slack"]
    webhook_url: SecretStr | None = None
    token: SecretStr | None = None
    channel: str | None = Field(default=None, min_length=1, max_length=80)
    api_url: str = "https://slack.com/api/"
    timeout: float = Field(default=10.0, gt=0, le=120)
    username: str | None = Field(default=None, min_length=1, max_length=80)

    @field_validator("webhook_url")
    @classmethod
    def _https_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        # Messages must not echo the value: it is a secret.
        return SecretStr(_web_url(value.get_secret_value(), "webhook URL"))

    @field_validator("api_url")
    @classmethod
    def _https_api(cls, value: str) -> str:
        return _web_url(value, "Slack API URL")

    @field_validator("token")
    @classmethod
    def _one_line_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (
            CONTROL.search(value.get_secret_value()) or " " in value.get_secret_value()
        ):
            raise ValueError("must be one word (a bot token, xoxb-…)")
        return value

    @model_validator(mode="after")
    def _one_way_in(self) -> SlackConfig:
        if self.token is not None and not self.channel:
            raise ValueError("a Slack token needs a channel (an id such as C0123456789)")
        if self.token is None and self.channel is not None:
            raise ValueError("a Slack channel needs a token (a webhook posts to its own)")
        if self.token is None and self.webhook_url is None:
            raise ValueError("needs webhook_url, or token and channel")
        return self

    @field_validator("username")
    @classmethod
    def _one_line_name(cls, value: str | None) -> str | None:
        if value is not None and CONTROL.search(value):
            raise ValueError("must be one line without control characters")
        return value


def _web_url(text: str, what: str) -> str:
    url = text.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise ValueError(f"must be an https:// {what}") from None
    if parts.scheme not in ("http", "https") or not host or CONTROL.search(url) or " " in url:
        raise ValueError(f"must be an https:// {what}")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ValueError("must use https:// (plain http:// only for a loopback host)")
    return url


Security = Literal["starttls", "tls", "none"]

DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "tls": 465, "none": 25}


def parse_address(text: str) -> Address:
    """One mail address, with an optional display name (``"코스피 감시 <kmon@x.kr>"``).

    Raises ValueError for anything else: several addresses, a missing domain,
    control characters (CR/LF included) or a header parser defect.
    """
    if CONTROL.search(text):
        raise ValueError("must not contain line breaks or control characters")
    try:
        header = SMTP_POLICY.header_factory("to", text)
        addresses = header.addresses
        defects = header.defects
    except (IndexError, ValueError, TypeError):
        raise ValueError(f"not a mail address: {text!r}") from None
    if len(addresses) != 1 or defects:
        raise ValueError(f"not a single mail address: {text!r}")
    address: Address = addresses[0]
    if not address.username or not address.domain or " " in address.addr_spec:
        raise ValueError(f"not a mail address: {text!r}")
    return address


class EmailConfig(BaseModel):
    """An SMTP relay and who gets the alerts. The password is never shown or logged."""

    # A validation error must not print the password (or anything) it was given.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Security = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str
    recipients: list[str] = Field(min_length=1)
    timeout: float = Field(default=30.0, gt=0, le=300)
    validate_certs: bool = True
    ca_file: str | None = None
    subject_prefix: str = "[kmon]"

    @field_validator("host")
    @classmethod
    def _host_name(cls, value: str) -> str:
        if CONTROL.search(value) or not value.strip() or " " in value.strip():
            raise ValueError("must be a host name or address")
        return value.strip()

    @field_validator("sender")
    @classmethod
    def _sender_address(cls, value: str) -> str:
        parse_address(value)
        return value.strip()

    @field_validator("recipients")
    @classmethod
    def _recipient_addresses(cls, value: list[str]) -> list[str]:
        for item in value:
            parse_address(item)
        return [item.strip() for item in value]

    @field_validator("username", "subject_prefix", "ca_file")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and CONTROL.search(value):
            raise ValueError("must be one line without control characters")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> EmailConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both or neither")
        if (
            self.username is not None
            and self.security == "none"
            and not is_loopback_host(self.host)
        ):
            raise ValueError(
                "refusing to send a password without TLS: use security 'starttls' or 'tls'"
            )
        return self

    @property
    def smtp_port(self) -> int:
        """The port to connect to: the configured one, else the usual one for ``security``."""
        return self.port if self.port is not None else DEFAULT_PORTS[self.security]


class ConsoleConfig(BaseModel):
    """Alerts written where the operator already looks."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["console"]
    stream: Literal["log", "stdout"] = "log"


# ``type`` selects the kind, so a configuration error names the fields of the kind
# that was meant, not those of every kind.
ChannelConfig = Annotated[SlackConfig | EmailConfig | ConsoleConfig, Field(discriminator="type")]


def _clock_time(value: object) -> object:
    """``HH:MM`` (Korean time). YAML 1.1 reads an unquoted ``22:00`` as the base-60
    number 1320, so whole minutes of a day from 1:00 on are taken back as that."""
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 60 <= value < 24 * 60:
        return time(value // 60, value % 60)
    if isinstance(value, str) and (match := _HHMM.match(value)):
        return time(int(match[1]), int(match[2]))
    raise ValueError(f"not a time of day: {value!r} (use HH:MM in quotes, e.g. '07:30')")


ClockTime = Annotated[time, BeforeValidator(_clock_time)]


def next_at(clock: time, now: datetime) -> datetime:
    """The first moment after ``now`` when KST wall time is ``clock`` (UTC-aware)."""
    local = now.astimezone(KST)
    candidate = datetime.combine(local.date(), clock, KST)
    if candidate <= local:
        candidate += timedelta(days=1)
    return candidate.astimezone(now.tzinfo)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    """Which signals a route takes. Every list given must match (an empty one matches
    all); within a list, any entry does. ``tickers`` match if any of the signal's do.
    ``min_score``: news signals need at least that relevance score (0–100); signals
    without a score (moves, source health) are not held back by it."""

    kinds: list[Kind] = Field(default_factory=list)
    min_severity: Severity | None = None
    severities: list[Severity] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)
    tickers: list[str] = Field(default_factory=list)
    min_score: int | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="after")
    def _one_severity_filter(self) -> Match:
        if self.min_severity is not None and self.severities:
            raise ValueError("give min_severity or severities, not both")
        return self

    def matches(
        self,
        kind: str,
        severity: str,
        rule_id: str,
        tickers: Sequence[str],
        score: float | None = None,
    ) -> bool:
        if self.min_score is not None and score is not None and score < self.min_score:
            return False
        if self.kinds and kind not in self.kinds:
            return False
        if self.severities and severity not in self.severities:
            return False
        if (
            self.min_severity is not None
            and SEVERITY_RANK.get(severity, -1) < (SEVERITY_RANK[self.min_severity])
        ):
            return False
        if self.rules and rule_id not in self.rules:
            return False
        return not self.tickers or any(t in self.tickers for t in tickers)


class Throttle(_Strict):
    """At most ``max`` messages per ``per`` seconds (a sliding window) on each channel
    of the route; what is held back goes out folded into the next allowed message."""

    max: int = Field(ge=1)
    per: Seconds


class QuietHours(_Strict):
    """From ``start`` to ``end``, Korean time; ``22:00``–``07:00`` crosses midnight."""

    start: ClockTime
    end: ClockTime

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end are the same time")
        return self

    def end_after(self, now: datetime) -> datetime | None:
        """When the quiet period containing ``now`` ends, or None outside one."""
        local = now.astimezone(KST)
        wall = local.time().replace(tzinfo=None)
        if self.start < self.end:
            quiet = self.start <= wall < self.end
        else:
            quiet = wall >= self.start or wall < self.end
        return next_at(self.end, now) if quiet else None


class Route(_Strict):
    """Signals matching ``match`` go to ``channels``, paced as configured.

    ``group_wait``: seconds to wait for more signals to share the message (0 sends at
    once). ``suppress_repeats``: a signal with the same rule and subject as one this
    route delivered within that many seconds is stored as ``suppressed``, not sent.
    ``quiet_hours``: non-critical signals wait for the end and go out as one digest.
    """

    name: str = Field(pattern=_NAME)
    match: Match = Field(default_factory=Match)
    channels: list[str] = Field(min_length=1)
    group_wait: Wait = 0.0
    throttle: Throttle | None = None
    suppress_repeats: Seconds | None = None
    quiet_hours: QuietHours | None = None

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == DIGEST_ROUTE:
            raise ValueError(f"the route name {DIGEST_ROUTE!r} is kept for the daily digest")
        return value


class DailyDigest(_Strict):
    """One message a day at ``at`` (KST) to ``channel`` with the signals it selects.

    A signal that a route already sends to the same channel is not repeated in the
    digest (a signal reaches a channel once): give the digest a channel of its own.
    """

    channel: str
    at: ClockTime = time(8, 0)
    kinds: list[Kind] = Field(default_factory=list)
    min_severity: Severity = "info"

    def matches(self, kind: str, severity: str) -> bool:
        if self.kinds and kind not in self.kinds:
            return False
        return SEVERITY_RANK.get(severity, -1) >= SEVERITY_RANK[self.min_severity]


class DispatchSettings(_Strict):
    """How the dispatcher sends: retries, leases, batch sizes.

    ``lease``: how long claimed rows stay reserved for one round. A round starts new
    sends only in the first half of it, so a send (bounded by its channel's timeout)
    must fit in the other half; one that runs past the lease may be repeated by
    another dispatcher sharing the database.
    """

    max_attempts: int = Field(default=12, ge=1, le=1000)
    backoff_base: Seconds = 10.0
    backoff_max: Seconds = 3600.0
    lease: Seconds = 120.0
    batch: int = Field(default=100, ge=1, le=10_000)
    max_per_message: int = Field(default=20, ge=1, le=1000)
    max_per_digest: int = Field(default=100, ge=1, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> DispatchSettings:
        if self.backoff_max < self.backoff_base:
            raise ValueError("backoff_max is shorter than backoff_base")
        return self


def _default_channels() -> dict[str, Any]:
    return {"console": {"type": "console"}}


class AlertSettings(_Strict):
    """Channels by name, the routes to them, the daily digest and dispatch tuning.

    ``enabled: false`` stores signals without delivering them (no outbox rows).
    """

    enabled: bool = True
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    digest: DailyDigest | None = None
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        # Filled in as data, before validation: a route to "every channel" must know
        # which channels were configured.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("channels") is None:
            data["channels"] = _default_channels()
        if data.get("routes") is None and isinstance(data["channels"], dict):
            names = list(data["channels"])
            data["routes"] = [{"name": DEFAULT_ROUTE, "channels": names}] if names else []
        return data

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.match(_NAME, name):
                raise ValueError(
                    f"channel name {name!r}: use lower-case letters, digits, '.', '_', '-'"
                )
        return value

    @field_validator("routes")
    @classmethod
    def _routes_name_channels(cls, value: list[Route], info: ValidationInfo) -> list[Route]:
        channels = info.data.get("channels")
        seen: set[str] = set()
        for index, route in enumerate(value):
            if route.name in seen:
                raise ValueError(f"route name {route.name!r} is used twice")
            seen.add(route.name)
            if channels is None:  # the channels failed validation themselves
                continue
            for position, name in enumerate(route.channels):
                if name not in channels:
                    raise ValueError(
                        f"routes[{index}].channels[{position}]: unknown channel {name!r} "
                        f"(configured: {', '.join(sorted(channels)) or 'none'})"
                    )
        return value

    @field_validator("digest")
    @classmethod
    def _digest_channel(cls, value: DailyDigest | None, info: ValidationInfo) -> Any:
        channels = info.data.get("channels")
        if value is not None and channels is not None and value.channel not in channels:
            raise ValueError(
                f"digest.channel: unknown channel {value.channel!r} "
                f"(configured: {', '.join(sorted(channels)) or 'none'})"
            )
        return value

    def route(self, name: str) -> Route | None:
        return next((r for r in self.routes if r.name == name), None)
