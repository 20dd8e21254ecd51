"""Settings: one pydantic-settings object from a YAML file and ``KMON_*`` variables.

Precedence, highest first: environment (``KMON_DATABASE__URL`` …, nested with ``__``),
the YAML file, the built-in defaults. The file is ``--config``, else ``$KMON_CONFIG``,
else ``./kmon.yaml`` when it exists; with none, the defaults alone make a working
daemon (SQLite in the state directory, the curated feeds of :mod:`monitor.defaults`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from adapters.netloc import is_loopback_host
from monitor.alerting import AlertSettings
from monitor.timefmt import bounded_duration, parse_duration
from monitor.yamlfile import YamlDocument, YamlFileError, load_yaml

ENV_PREFIX = "KMON_"
DEFAULT_CONFIG_NAME = "kmon.yaml"

# Remote services get a floor on how often we ask; loopback hosts (local relays,
# tests) are exempt because nobody else pays for those requests.
MIN_REMOTE_INTERVAL = 60.0


class ConfigError(Exception):
    """A configuration problem; ``str()`` is one line naming the file and field."""


Seconds = Annotated[
    float, BeforeValidator(parse_duration), AfterValidator(bounded_duration), Field(gt=0)
]


def is_loopback_url(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


# The kind of the configured news sources; quote sources keep their health in the
# same table under their own kind.
FEED_KIND = "rss"
# OpenDART disclosures: configured and polled like a feed, stored as its items.
DART_KIND = "dart"
POLLED_KINDS = (FEED_KIND, DART_KIND)
# The variable that sets the key of every dart source, outranking the file.
DART_KEY_ENV = "KMON_DART_API_KEY"
# OpenDART allows 20,000 requests a day per key; kmon stays well under it by default.
DART_DAILY_BUDGET = 2000


class SourceConfig(BaseModel):
    """One polled source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    kind: Literal["rss", "dart"] = "rss"
    url: str
    interval: Seconds = 600.0
    enabled: bool = True
    # What the source is: a news outlet, or the government speaking for itself (a
    # ministry's press releases); rules can weigh an official announcement above a
    # report about it (source_types in the rule language).
    source_type: Literal["news", "government"] = "news"
    # dart only: the key (crtfc_key), the stock codes to follow (the stocks of
    # quotes.tickers when unset), the disclosure types (pblntf_ty: A … J), requests a
    # KST day, and how far back the first poll reads.
    api_key: SecretStr | None = None
    tickers: list[Annotated[str, Field(pattern=r"^[0-9][0-9A-Z]{5}$")]] | None = None
    types: list[Literal["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"]] = Field(
        default_factory=list
    )
    daily_budget: int = Field(default=DART_DAILY_BUDGET, ge=1, le=20_000)
    first_lookback_days: int = Field(default=7, ge=0, le=90)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.startswith("quotes-"):
            raise ValueError("names starting with 'quotes-' are kept for the quote sources")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value.strip()

    @model_validator(mode="after")
    def _kind_fields(self) -> SourceConfig:
        if self.kind != DART_KIND:
            given = sorted(
                name
                for name in ("api_key", "tickers", "types", "daily_budget", "first_lookback_days")
                if name in self.model_fields_set
            )
            if given:
                raise ValueError(f"{', '.join(given)}: only for sources of kind dart")
        return self

    @model_validator(mode="after")
    def _interval_floor(self) -> SourceConfig:
        if self.interval < MIN_REMOTE_INTERVAL and not is_loopback_url(self.url):
            raise ValueError(
                f"interval {self.interval:g}s is below the {MIN_REMOTE_INTERVAL:g}s floor "
                "for remote sources"
            )
        return self


def default_state_dir() -> Path:
    """Where the embedded database lives when no URL is configured.

    ``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``), else
    ``$XDG_STATE_HOME/kmon``, else ``~/.local/state/kmon``.
    """
    if state := os.environ.get("STATE_DIRECTORY"):
        return Path(state.split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kmon"


def default_database_url() -> str:
    return f"sqlite+aiosqlite:///{default_state_dir() / 'kmon.db'}"


# libpq's sslmode values, which asyncpg takes as its ``ssl`` argument.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class DatabaseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: SecretStr = Field(default_factory=lambda: SecretStr(default_database_url()))
    pool_size: int = Field(default=10, ge=1, le=200)
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: SecretStr) -> SecretStr:
        # Checked without SQLAlchemy (commands that never open the database, such as
        # `kmon rules test`, should not import it); its own errors would also echo the
        # URL, password and all.
        try:
            parts = urlsplit(value.get_secret_value())
            port = parts.port  # raises for a port that is not a number up to 65535
        except ValueError:
            raise ValueError("not a database URL (scheme://user@host:port/name)") from None
        if port == 0 or parts.netloc.endswith(":"):
            raise ValueError("the port must be a number from 1 to 65535")
        if not parts.scheme or (parts.scheme.startswith("postgresql") and not parts.hostname):
            raise ValueError("not a database URL (scheme://user@host:port/name)")
        scheme = value.get_secret_value().split(":", 1)[0]
        if scheme not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise ValueError(
                f"unsupported database scheme {scheme!r}: use sqlite+aiosqlite:///PATH "
                "or postgresql+asyncpg://USER@HOST/DB"
            )
        for key, mode in parse_qsl(parts.query, keep_blank_values=True):
            if key in ("sslmode", "ssl") and mode not in SSL_MODES:
                raise ValueError(f"{key} {mode!r} is not one of {', '.join(SSL_MODES)}")
        return value


class HttpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_agent: str | None = None
    connect_timeout: Seconds = 10.0
    total_timeout: Seconds = 30.0
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_redirects: int = Field(default=5, ge=0, le=30)
    per_host_limit: int = Field(default=4, ge=1, le=1000)
    # A fetch running longer than this stops counting against its host's limit.
    per_host_hold: Seconds = 10.0
    # Hosts whose per-host slots are kept at once, the least recently polled forgotten
    # first: far more than the configured sources name.
    limited_hosts: int = Field(default=1024, ge=1, le=1_000_000)
    # Processes that parse fetched feed bodies beside the event loop, and tell in the
    # same round trip which items fire a news rule (never more than the CPUs less one;
    # 0: a thread of the daemon parses). docs/benchmarks.md says what each costs.
    parse_workers: int = Field(default=0, ge=0, le=64)


class SchedulerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jitter: float = Field(default=0.1, ge=0, le=0.5, description="fraction of the interval")
    backoff_max: Seconds = 6 * 3600.0
    permanent_retry: Seconds = 24 * 3600.0
    grace_period: Seconds = 10.0


class ReplicaSettings(BaseModel):
    """Several ``kmon run`` processes on one PostgreSQL database (docs/operations.md).

    ``lease``: how long a claimed source or task stays reserved for the replica that
    claimed it, on the database's clock; a replica that dies holding it is replaced
    after that. It must outlast the longest poll (``http.total_timeout`` and the
    store). ``heartbeat``: how often each replica says it is alive. ``claim_jitter``:
    up to this many seconds, at random, that a replica waits before claiming a due
    source, so that replicas firing at one due time do not all race for every row.
    ``name``: this replica's id (default: host, pid and a random suffix).
    """

    model_config = ConfigDict(extra="forbid")

    lease: Seconds = 120.0
    heartbeat: Seconds = 10.0
    claim_jitter: float = Field(default=0.5, ge=0, le=60, description="seconds")
    name: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[\w.:@-]+$")

    @model_validator(mode="after")
    def _lease_outlasts_heartbeat(self) -> ReplicaSettings:
        if self.lease < 2 * self.heartbeat:
            raise ValueError(
                f"lease {self.lease:g}s must be at least twice the heartbeat ({self.heartbeat:g}s)"
            )
        return self


class HealthSettings(BaseModel):
    """The daemon's HTTP endpoints: /healthz, /readyz and /metrics (``kmon run`` only)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # Loopback by default: the endpoints carry no secrets, but nothing outside the
    # machine needs them unless a scraper is set up (the container listens on 0.0.0.0).
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535, description="0 picks a free port")


class RulesSettings(BaseModel):
    """The rules that tag news and moves: the built-in set, and a user's file over it.

    ``file`` may add and replace entities, themes and rules and disable built-in ones
    (see docs/rules.md); a relative path is read from the config file's folder.
    ``workers``: processes that tell, beside the event loop, which fetched items fire
    a rule (0, the default: the event loop tags them all itself; never more than the
    CPUs less one). It saves event-loop time where most items fire nothing and a core
    is free; on a busy machine the round trip costs more (docs/benchmarks.md).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    file: Path | None = None
    # The story window holds at most this many headlines (the items that fired a news
    # rule in the last 48 h), the earliest forgotten first: about 4 KB each.
    story_headlines: int = Field(default=10_000, ge=100, le=10_000_000)
    workers: int = Field(default=0, ge=0, le=64)


# Quote sources answer every few seconds; asking more often than this is abuse.
MIN_QUOTE_INTERVAL = 15.0


class TickerConfig(BaseModel):
    """A KRX instrument to follow: a stock by its six-character code, or an index."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^(?:[0-9][0-9A-Z]{5}|[A-Z][A-Z0-9]{1,11})$")
    kind: Literal["stock", "index"] = "stock"
    market: Literal["KOSPI", "KOSDAQ"] = "KOSPI"
    name_ko: str
    name_en: str


def _default_tickers() -> list[TickerConfig]:
    from monitor.defaults import DEFAULT_TICKERS

    return [TickerConfig(**t) for t in DEFAULT_TICKERS]


QuoteProvider = Literal["naver", "naver_mobile", "yahoo"]


class QuoteSettings(BaseModel):
    """Quote polling on the KRX clock, and the sources it asks, in order of preference."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    interval: Seconds = 60.0
    after_close: Seconds = 120.0
    providers: list[QuoteProvider] = Field(
        default_factory=lambda: list[QuoteProvider](["naver", "yahoo"]), min_length=1
    )
    batch_size: int = Field(default=50, ge=1, le=200)
    bar_days: int = Field(default=260, ge=20, le=2000)
    # Daily-bar figures cached for the move rules (one per ticker and day; the least
    # recently used leave first, and each new day the days before the one before).
    bar_figures_cached: int = Field(default=10_000, ge=10, le=1_000_000)
    naver_polling_url: str = "https://polling.finance.naver.com/api/realtime"
    naver_mobile_url: str = "https://m.stock.naver.com/api"
    naver_chart_url: str = "https://fchart.stock.naver.com/sise.nhn"
    yahoo_chart_url: str = "https://query1.finance.yahoo.com/v8/finance/chart"
    tickers: list[TickerConfig] = Field(default_factory=_default_tickers)
    # Exam days (KRX opens 10:00, closes 16:30) beyond those kmon knows: one a year.
    late_open_days: list[date] = Field(default_factory=list)

    @field_validator("interval")
    @classmethod
    def _floor(cls, value: float) -> float:
        if value < MIN_QUOTE_INTERVAL:
            raise ValueError(f"interval {value:g}s is below the {MIN_QUOTE_INTERVAL:g}s floor")
        return value

    @field_validator("tickers")
    @classmethod
    def _unique_codes(cls, value: list[TickerConfig]) -> list[TickerConfig]:
        codes = [t.code for t in value]
        if dupes := sorted({c for c in codes if codes.count(c) > 1}):
            raise ValueError(f"ticker {dupes[0]!r} is listed twice")
        return value


def _default_sources() -> list[SourceConfig]:
    from monitor.defaults import DEFAULT_SOURCES

    return [SourceConfig(**s) for s in DEFAULT_SOURCES]


class Settings(BaseSettings):
    """The effective configuration of one kmon process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        # A rejected value may be a credential (a database URL): never echo inputs.
        hide_input_in_errors=True,
        validate_default=True,
    )

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    replicas: ReplicaSettings = Field(default_factory=ReplicaSettings)
    quotes: QuoteSettings = Field(default_factory=QuoteSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    sources: list[SourceConfig] = Field(default_factory=_default_sources)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, value: list[SourceConfig]) -> list[SourceConfig]:
        seen: set[str] = set()
        for source in value:
            if source.name in seen:
                raise ValueError(f"source name {source.name!r} is used twice")
            seen.add(source.name)
        return value

    @field_validator("sources")
    @classmethod
    def _dart_keys(cls, value: list[SourceConfig]) -> list[SourceConfig]:
        # A list has no KMON_SOURCES__… variables of its own: one variable sets the
        # key of every dart source (most have one), as for the other secrets.
        key = os.environ.get(DART_KEY_ENV, "").strip()
        out = []
        for source in value:
            if source.kind == DART_KIND and key:
                source = source.model_copy(update={"api_key": SecretStr(key)})
            if source.kind == DART_KIND and source.enabled and not source.api_key:
                raise ValueError(
                    f"source {source.name!r} of kind dart needs api_key (or ${DART_KEY_ENV})"
                )
            out.append(source)
        return out

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init arguments; the environment outranks it.
        return (env_settings, init_settings)

    def dart_sources(self) -> dict[str, SourceConfig]:
        """The dart sources by name, each with its tickers (the stocks followed for
        quotes when it names none)."""
        stocks = [t.code for t in self.quotes.tickers if t.kind == "stock"]
        return {
            s.name: s if s.tickers is not None else s.model_copy(update={"tickers": stocks})
            for s in self.sources
            if s.kind == DART_KIND
        }

    def masked(self) -> dict[str, Any]:
        """The settings as plain data with every secret replaced by ``**********``."""
        from sqlalchemy.engine import make_url

        data = self.model_dump(mode="json")
        # A database URL is only secret in its password; show the rest.
        url = make_url(self.database.url.get_secret_value())
        data["database"]["url"] = url.render_as_string(hide_password=True)
        return data


def find_config_file(
    explicit: Path | None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The YAML file to read: ``--config``, ``$KMON_CONFIG``, or ``./kmon.yaml``."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        return explicit
    if env.get("KMON_CONFIG"):
        return Path(env["KMON_CONFIG"])
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.is_file() else None


def load_settings(path: Path | None = None, *, search: bool = True) -> Settings:
    """Build the settings from ``path`` (or the file found by search) and the environment.

    Raises :class:`ConfigError` with one line naming the file, the field and the fault.
    """
    file = find_config_file(path) if search else path
    doc: YamlDocument | None = None
    data: dict[str, Any] = {}
    if file is not None:
        try:
            doc = load_yaml(file)
        except YamlFileError as exc:
            raise ConfigError(str(exc)) from exc
        if not isinstance(doc.data, dict):
            raise ConfigError(f"{file}:1: the top level must be a mapping of settings")
        data = doc.data
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, doc)) from exc
    rules_file = settings.rules.file
    if rules_file is not None and not rules_file.is_absolute() and file is not None:
        settings.rules.file = file.parent / rules_file
    return settings


def _format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _env_names(loc: Sequence[str | int]) -> list[str]:
    """The ``KMON_*`` variables that may have set the field at ``loc``."""
    top = str(loc[0]).upper() if loc else ""
    return sorted(
        name
        for name in os.environ
        if name == f"{ENV_PREFIX}{top}" or name.startswith(f"{ENV_PREFIX}{top}__")
    )


def describe_validation_error(exc: ValidationError, doc: YamlDocument | None) -> str:
    """One line for the first error: where (file:line or variable), which field, what."""
    first = exc.errors()[0]
    # Drop pydantic's internal steps (e.g. "function-after[...]") from the location.
    loc = [p for p in first["loc"] if isinstance(p, int) or "[" not in str(p)]
    message = first["msg"].removeprefix("Value error, ")
    field = _format_loc(loc)
    env = _env_names(loc)
    if env:
        where = "environment " + ", ".join(env)
    elif doc is not None:
        line = doc.line_of(loc)
        where = f"{doc.path}:{line}" if line else str(doc.path)
    else:
        where = "built-in defaults"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {field}: {message}{more}"
