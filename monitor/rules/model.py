"""Rules files: entities, themes and rules, validated, with errors naming file, line, field.

A rules file is YAML with three optional lists and a list of rule ids::

    version: 1
    entities: [...]   # companies, people and bodies, with aliases and tickers
    themes: [...]     # policy topics, each a list of terms in Korean and English
    rules: [...]      # news, move, joined, source_health, disclosure, disclosure_move
    disabled: [...]   # rule ids to drop (from the default set or this file)

:func:`load_rules` reads the default set shipped in the package (``default.yaml``) and
merges a user's file over it: an entity, theme or rule with the id of a default one
replaces it where it stood, new ones are added at the end, and ``disabled`` removes
rules. References (a rule's themes and entities, a joined rule's move and news rules,
sectors) are checked on the merged set, so a user's rule may use the default themes.
Entities and themes share one namespace of ids (a hit names either by id alone).

Every problem is a :class:`RulesError` whose ``str()`` is one line,
``file:line: field: problem`` (the style of :mod:`monitor.config`).

Only news rules are evaluated by this layer (:mod:`monitor.rules.match`); move, joined,
source_health, disclosure and disclosure_move rules are validated here and evaluated
elsewhere (:mod:`monitor.rules.evaluate`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from monitor.rules import RulesError
from monitor.severity import Severity
from monitor.yamlfile import YamlDocument, YamlFileError, load_yaml

DEFAULT_RULES = "default.yaml"

RULE_KINDS = ("news", "move", "joined", "source_health", "disclosure", "disclosure_move")

# Joins the texts that monitor.rules.match scans at once: printable (so they keep the
# fast folding path), unchanged by folding, neither a letter nor Hangul (so a word
# boundary), and refused in terms, so that no match can span two texts.
SEPARATOR = "\u241e"


# --- scalar types -------------------------------------------------------------------

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# The pattern of monitor.config.TickerConfig.code: a six-character KRX code or an index.
_TICKER = re.compile(r"^(?:[0-9][0-9A-Z]{5}|[A-Z][A-Z0-9]{1,11})$")
_SECTOR = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_WHITESPACE = re.compile(r"\s+")


def fold_term(text: str) -> str:
    """The form a term is matched in: NFKC, case-folded, whitespace runs as one space.

    Text is folded the same way by :mod:`monitor.rules.match`, so ``ＮＡＶＥＲ``,
    ``Naver`` and ``NAVER`` are one term.
    """
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(
            f"not a valid id: {value!r} (use lower-case letters, digits, '.', '_' and '-', "
            "at most 64 characters)"
        )
    return value


def _check_sector(value: str) -> str:
    if not _SECTOR.match(value):
        raise ValueError(f"not a valid sector tag: {value!r} (use e.g. ai-platform, telecom)")
    return value


def _ticker_text(value: object) -> object:
    # YAML reads an unquoted 035420 as the octal number 14096 and 005930 as a string:
    # refuse numbers instead of guessing which code was meant.
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f"a ticker code must be quoted, e.g. '035420' (YAML read it as the number {value})"
        )
    return value


def _check_ticker(value: str) -> str:
    if not _TICKER.match(value):
        raise ValueError(f"not a KRX code or index name: {value!r} (use e.g. '035420' or 'KOSPI')")
    return value


def _check_term(value: str) -> str:
    if SEPARATOR in value:
        raise ValueError(f"a term may not contain {SEPARATOR!r} (it separates texts)")
    cleaned = _WHITESPACE.sub(" ", value).strip()
    folded = fold_term(cleaned).replace(" ", "")
    # One Han character is a word of its own in Korean headlines: 美 (the US), 中, 日.
    if len(folded) < 2 and not (folded and "\u4e00" <= folded <= "\u9fff"):
        raise ValueError(f"term {value!r} is too short to match reliably (at least 2 characters)")
    return cleaned


Id = Annotated[str, AfterValidator(_check_id)]
Points = Annotated[int, Field(ge=0, le=100)]
Sector = Annotated[str, AfterValidator(_check_sector)]
TickerCode = Annotated[str, BeforeValidator(_ticker_text), AfterValidator(_check_ticker)]
Term = Annotated[str, AfterValidator(_check_term)]
TextField = Literal["title", "summary"]
Language = Literal["ko", "en"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- entities and themes ------------------------------------------------------------


class NearTerm(_Strict):
    """Words that must occur together, in any order, within ``within`` words of each
    other in one title or one sentence: ``{all: [외국인, [순매수, 매수세]], within: 4}``
    finds 외국인, 네이버 이틀째 순매수. Each part is a term or a list of alternatives.
    ``ordered: true``: the parts must also come in the order written ("Seoul" then the
    verb it does: "Seoul bans …", not "… adds Seoul asset")."""

    all: list[Term | list[Term]] = Field(min_length=2, max_length=6)
    within: int = Field(default=5, ge=1, le=30)
    ordered: bool = False

    def parts(self) -> list[list[str]]:
        """Every part as a list of alternatives."""
        return [[p] if isinstance(p, str) else list(p) for p in self.all]

    @model_validator(mode="after")
    def _parts_not_empty(self) -> NearTerm:
        if any(isinstance(p, list) and not p for p in self.all):
            raise ValueError("a part of a near term is an empty list")
        return self


class EntityContext(_Strict):
    """Whether a mention is this entity, read from the words around it.

    ``within`` words either side, in the same title or sentence: a mention with any
    of ``rejects`` there is someone (or something) else; with ``requires`` given, a
    mention needs one of them there (or anywhere in the title, with ``title: true``)
    to count. The actor 하정우 and the AI official share a name: the official is named
    with AI, 수석, 대통령실 …; the actor with 영화, 주연, 개봉 …. ``rejects_before``: a
    reject counts only before the mention ("Japan's government", not "the government
    fines a Chinese app").
    """

    within: int = Field(default=8, ge=1, le=50)
    requires: list[Term] = Field(default_factory=list)
    rejects: list[Term] = Field(default_factory=list)
    rejects_before: bool = False
    title: bool = True

    @model_validator(mode="after")
    def _says_something(self) -> EntityContext:
        if not (self.requires or self.rejects):
            raise ValueError("a context needs requires or rejects")
        return self


class Entity(_Strict):
    """A company, person or public body that news names.

    ``aliases`` are every form to look for, in Korean and English (the names are for
    display only). ``excludes`` are longer names that contain an alias but mean someone
    else (``배우 하정우``, the actor): being longer they win, and resolve to nothing.
    ``ticker`` is a company's own KRX code; ``related_tickers`` link anyone to
    companies whose stock their news moves (Ha Jung-woo headed Naver's AI centre).
    ``sector`` is its market sector and ``tags`` are further sector tags it answers to
    (``ai-stock``: a stock that AI policy moves), for ``sector:TAG`` references and the
    ``sectors`` of move rules. ``context`` decides, from the words around a mention,
    whether the mention is this entity at all (:class:`EntityContext`).
    """

    id: Id
    kind: Literal["company", "person", "body"]
    name_en: str = Field(min_length=1)
    name_ko: str | None = None
    aliases: list[Term] = Field(min_length=1)
    excludes: list[Term] = Field(default_factory=list)
    ticker: TickerCode | None = None
    related_tickers: list[TickerCode] = Field(default_factory=list)
    sector: Sector | None = None
    tags: list[Sector] = Field(default_factory=list)
    context: EntityContext | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _ticker_for_companies(self) -> Entity:
        if self.ticker is not None and self.kind != "company":
            raise ValueError(
                "only a company has a ticker: link people and bodies with related_tickers"
            )
        return self

    def tickers(self) -> list[str]:
        """Its own ticker first, then the linked ones."""
        own = [self.ticker] if self.ticker else []
        return own + [t for t in self.related_tickers if t not in own]


class GenericTerms(_Strict):
    """Terms too common to tell a theme alone (GPU, data centre): they count only in a
    text where the anchor ``requires`` names holds (an anchor id of the rules file)."""

    requires: Id
    terms: list[Term] = Field(default_factory=list)
    near: list[NearTerm] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_terms(self) -> GenericTerms:
        if not (self.terms or self.near):
            raise ValueError("generic needs terms or near")
        return self


class Anchor(_Strict):
    """What ties a text to a place or an actor, for generic terms that need it.

    It holds in a text (title and summary) that names any of ``entities`` (ids,
    ``sector:TAG``, or ``kind:body|person|company``), shows any of ``themes`` (by their
    own terms, never by generic ones) or any of its ``terms`` / ``near`` terms. Its
    terms are policy words that any country uses (a bill, a budget): in a text with one
    of ``rejects`` (another country's government acting) they do not count, and only
    the entities and near terms (written to name Korea acting) can make it hold.
    """

    id: Id
    description: str | None = None
    entities: list[str] = Field(default_factory=list)
    themes: list[Id] = Field(default_factory=list)
    terms: list[Term] = Field(default_factory=list)
    near: list[NearTerm] = Field(default_factory=list)
    rejects: list[Term] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_something(self) -> Anchor:
        if not (self.entities or self.themes or self.terms or self.near):
            raise ValueError("an anchor needs entities, themes, terms or near")
        return self


class Theme(_Strict):
    """A policy topic, recognised by any of its terms.

    Write a term with a space where its words part; in Korean the space is optional
    (``인공지능 기본법`` also finds ``인공지능기본법``), see :mod:`monitor.rules.match`.
    ``near`` terms are words that must occur close together (:class:`NearTerm`);
    ``generic`` terms count only where their anchor holds (:class:`GenericTerms`).
    ``sectors`` are the market sectors its news concerns even when no company is named.
    ``fields``: where the theme is looked for (a headline's marks such as [사설] or
    "webinar" are the title's; an article's body mentions forums in passing).
    """

    id: Id
    name_en: str = Field(min_length=1)
    name_ko: str | None = None
    terms: list[Term] = Field(default_factory=list)
    near: list[NearTerm] = Field(default_factory=list)
    generic: GenericTerms | None = None
    sectors: list[Sector] = Field(default_factory=list)
    fields: list[TextField] = Field(
        default_factory=lambda: list[TextField](["title", "summary"]), min_length=1
    )
    note: str | None = None

    @model_validator(mode="after")
    def _has_terms(self) -> Theme:
        if not (self.terms or self.near or self.generic):
            raise ValueError("a theme needs terms, near or generic")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError("fields lists a field twice")
        return self


# --- rules --------------------------------------------------------------------------


class Condition(_Strict):
    """Lists of references: ``any`` (at least one), ``all`` (every one), ``none``."""

    any: list[str] = Field(default_factory=list)
    all: list[str] = Field(default_factory=list)
    none: list[str] = Field(default_factory=list)

    def positive(self) -> bool:
        return bool(self.any or self.all)

    def refs(self) -> Iterator[tuple[str, int, str]]:
        """(list name, index, reference) for every reference."""
        for name in ("any", "all", "none"):
            for index, ref in enumerate(getattr(self, name)):
                yield name, index, ref


class TermCondition(Condition):
    """Like :class:`Condition`, with literal terms instead of references."""

    any: list[Term] = Field(default_factory=list)
    all: list[Term] = Field(default_factory=list)
    none: list[Term] = Field(default_factory=list)


class _RuleBase(_Strict):
    id: Id
    severity: Severity = "info"
    description: str | None = None


class NewsRule(_RuleBase):
    """Fires on a news item whose text shows a theme.

    ``themes`` and ``terms`` say which topics must (``any``/``all``) or must not
    (``none``) appear; at least one positive list is required, because a mere mention
    of an entity is not a signal. ``entities`` narrows by who is named: entity ids, or
    ``sector:TAG`` for any entity of that sector (``kind:body``: any public body).
    ``fields`` are searched; ``sources`` and ``languages`` restrict the items the rule
    looks at. ``score`` is the relevance a signal starts from when this rule fires
    (:class:`Scoring` adds the evidence).
    """

    kind: Literal["news"]
    themes: Condition = Field(default_factory=Condition)
    terms: TermCondition = Field(default_factory=TermCondition)
    entities: Condition = Field(default_factory=Condition)
    fields: list[TextField] = Field(
        default_factory=lambda: list[TextField](["title", "summary"]), min_length=1
    )
    sources: list[str] | None = None
    source_types: list[Literal["news", "government"]] | None = None
    languages: list[Language] | None = None
    score: int = Field(default=30, ge=0, le=100)

    @model_validator(mode="after")
    def _needs_a_theme(self) -> NewsRule:
        if not (self.themes.positive() or self.terms.positive()):
            raise ValueError(
                "a news rule needs a theme: set themes.any, themes.all, terms.any or "
                "terms.all (naming an entity alone is not a signal)"
            )
        if len(set(self.fields)) != len(self.fields):
            raise ValueError("fields lists a field twice")
        return self


class ChangeCondition(_Strict):
    """The day's change is at least ``pct`` percent, optionally beyond an index's."""

    pct: float = Field(gt=0, le=100)
    direction: Literal["up", "down", "either"] = "either"
    relative_to: TickerCode | None = None


class ExtremeCondition(_Strict):
    """A new ``weeks``-week high (or low), claimed only on ``min_bars`` daily bars or more
    before the session: on a few weeks of history every rise is "a 52-week high"."""

    side: Literal["high", "low", "either"] = "high"
    weeks: int = Field(default=52, ge=1, le=260)
    min_bars: int = Field(default=200, ge=1, le=1300)


class VolumeCondition(_Strict):
    """Volume is at least ``multiple`` times the average of the ``days`` before."""

    multiple: float = Field(ge=1)
    days: int = Field(default=20, ge=2, le=260)


class MoveSpec(_Strict):
    """What a quote must do; every condition given must hold.

    ``tickers`` and ``sectors`` choose the instruments (no list: every followed stock).
    """

    tickers: list[TickerCode] = Field(default_factory=list)
    sectors: list[Sector] = Field(default_factory=list)
    change: ChangeCondition | None = None
    new_extreme: ExtremeCondition | None = None
    volume: VolumeCondition | None = None

    @model_validator(mode="after")
    def _needs_a_condition(self) -> MoveSpec:
        if self.change is None and self.new_extreme is None and self.volume is None:
            raise ValueError("a move needs change, new_extreme or volume")
        return self


class MoveRule(MoveSpec, _RuleBase):
    """Fires on a quote that moves as its :class:`MoveSpec` says."""

    kind: Literal["move"]


class Window(_Strict):
    """When news counts for a move, on event time and the KRX calendar.

    ``same_session``: news from the previous trading day's close up to the move.
    ``trading_days_before``: that many whole trading days before it as well.
    """

    trading_days_before: int = Field(default=1, ge=0, le=20)
    same_session: bool = True

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if self.trading_days_before == 0 and not self.same_session:
            raise ValueError("the window is empty: set trading_days_before or same_session")
        return self


class JoinedRule(_RuleBase):
    """A move that follows policy news about the ticker's entity or its sector.

    ``move`` is the id of a move rule or a move written in place (which then signals
    only through this rule). ``news`` lists the news rules that count (none: any).
    """

    kind: Literal["joined"]
    move: Annotated[
        Annotated[Id, Tag("ref")] | Annotated[MoveSpec, Tag("spec")],
        # Chosen by shape, so that a bad move written in place is reported as such.
        Discriminator(lambda v: "ref" if isinstance(v, str) else "spec"),
    ]
    news: list[Id] = Field(default_factory=list)
    about: Literal["entity", "sector", "either"] = "either"
    window: Window = Field(default_factory=Window)


_REPORT_MARK = re.compile(r"^\[[^\]]*\]")


def report_kind_of(report_nm: str) -> tuple[str, bool]:
    """A DART report name without its leading mark (``[기재정정]`` …), and whether it had
    one: a mark is a correction or amendment of an earlier filing, not a new event."""
    stripped = _REPORT_MARK.sub("", report_nm.strip()).strip()
    return stripped, stripped != report_nm.strip()


def _check_report(value: str) -> str:
    value = " ".join(value.split())
    if not value or len(value) > 100:
        raise ValueError("a report kind is 1 to 100 characters")
    return value


ReportKind = Annotated[str, AfterValidator(_check_report)]


class DisclosureRule(_RuleBase):
    """Fires on an OpenDART filing of a watched stock whose report name holds one of
    ``reports`` (``단일판매ㆍ공급계약체결`` matches ``[기재정정]단일판매ㆍ공급계약체결`` too,
    ``자기주식취득결정`` matches ``주요사항보고서(자기주식취득결정)``). A correction fires
    only with ``corrections: true``. ``tickers``: only these stocks (none: every one)."""

    kind: Literal["disclosure"]
    reports: list[ReportKind] = Field(min_length=1)
    tickers: list[TickerCode] = Field(default_factory=list)
    corrections: bool = False


class DisclosureMoveRule(_RuleBase):
    """A move of a stock after a filing of the same company (one of the ``disclosures``
    rules; none: any) inside ``window`` (default: the same or the previous session)."""

    kind: Literal["disclosure_move"]
    move: Annotated[
        Annotated[Id, Tag("ref")] | Annotated[MoveSpec, Tag("spec")],
        Discriminator(lambda v: "ref" if isinstance(v, str) else "spec"),
    ]
    disclosures: list[Id] = Field(default_factory=list)
    window: Window = Field(default_factory=Window)


class SourceHealthRule(_RuleBase):
    """A source with no successful poll for ``missed_intervals`` of its intervals."""

    kind: Literal["source_health"]
    sources: list[str] = Field(default_factory=list)
    missed_intervals: int = Field(default=3, ge=1, le=1000)


AnyRule = NewsRule | MoveRule | JoinedRule | SourceHealthRule | DisclosureRule | DisclosureMoveRule
Rule = Annotated[AnyRule, Field(discriminator="kind")]


class Scoring(_Strict):
    """How relevant a news signal is, from 0 to 100, and the severity that follows.

    A signal starts from the highest ``score`` of the news rules that fired and adds,
    once each: ``title`` when a theme that a fired rule asks for shows in the title (not
    only in the summary); ``extra_theme`` for each further such theme, up to
    ``max_extra_themes``; the points of
    every anchor of ``anchors`` that holds; of every reference of ``entities`` (an id,
    ``sector:TAG`` or ``kind:KIND``) that a named entity answers to; of the item's
    source in ``sources`` and of its type in ``source_types``. The sum is capped at 100.
    A score of ``warning`` or more makes the signal at least a warning, ``critical`` or
    more critical. A user's file sets only the weights it names (:meth:`over`).
    """

    title: Points = 15
    extra_theme: Points = 5
    max_extra_themes: int = Field(default=2, ge=0, le=10)
    anchors: dict[str, Points] = Field(default_factory=dict)
    entities: dict[str, Points] = Field(default_factory=dict)
    sources: dict[str, Points] = Field(default_factory=dict)
    source_types: dict[Literal["news", "government"], Points] = Field(default_factory=dict)
    warning: int = Field(default=60, ge=0, le=101)
    critical: int = Field(default=101, ge=0, le=101)

    @model_validator(mode="after")
    def _bands_in_order(self) -> Scoring:
        if self.critical < self.warning:
            raise ValueError("critical is below warning")
        return self

    def over(self, earlier: Scoring) -> Scoring:
        """This file's weights over ``earlier``'s: the fields it sets replace theirs, and
        its mappings add to (or replace by key) the earlier ones."""
        update: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if isinstance(value, dict):
                value = {**getattr(earlier, name), **value}
            update[name] = value
        return earlier.model_copy(update=update)


class RulesFile(_Strict):
    """One rules file as written; :func:`load_rules` merges and cross-checks them."""

    version: Literal[1] = 1
    entities: list[Entity] = Field(default_factory=list)
    anchors: list[Anchor] = Field(default_factory=list)
    themes: list[Theme] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    disabled: list[Id] = Field(default_factory=list)
    scoring: Scoring | None = None


# --- the merged set -----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Ruleset:
    """The effective rules: the default set with a user's file merged over it.

    Mappings keep file order (a replaced item keeps the place of the one it replaced).
    Compare rulesets by identity: :mod:`monitor.rules.match` caches its compiled
    matcher per ruleset object.
    """

    entities: Mapping[str, Entity]
    themes: Mapping[str, Theme]
    rules: Mapping[str, AnyRule]
    files: tuple[Path, ...] = ()
    anchors: Mapping[str, Anchor] = field(default_factory=dict)
    scoring: Scoring = field(default_factory=Scoring)
    by_ticker: Mapping[str, Entity] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_ticker = {e.ticker: e for e in self.entities.values() if e.ticker}
        object.__setattr__(self, "by_ticker", by_ticker)

    def news_rules(self) -> list[NewsRule]:
        return [r for r in self.rules.values() if isinstance(r, NewsRule)]

    def sectors(self) -> set[str]:
        """Every sector tag an entity or theme uses."""
        tags = {s for e in self.entities.values() for s in own_sectors(e)}
        return tags | {s for t in self.themes.values() for s in t.sectors}

    def sectors_of(self, entity: Entity) -> set[str]:
        """The entity's sector tags and those of the companies its tickers belong to."""
        tags = set(own_sectors(entity))
        for ticker in entity.tickers():
            company = self.by_ticker.get(ticker)
            if company is not None:
                tags.update(own_sectors(company))
        return tags

    def ticker_sectors(self, ticker: str) -> set[str]:
        """The sector tags of the company listed under ``ticker`` (none: unknown)."""
        company = self.by_ticker.get(ticker)
        return set(own_sectors(company)) if company is not None else set()


def own_sectors(entity: Entity) -> list[str]:
    """An entity's sector and its further tags."""
    return ([entity.sector] if entity.sector else []) + entity.tags


# --- loading ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Origin:
    """Where a merged item was written, for error messages."""

    doc: YamlDocument
    loc: tuple[str | int, ...]

    def error(self, sub: Sequence[str | int], message: str) -> RulesError:
        loc = (*self.loc, *sub)
        line = self.doc.line_of(loc)
        where = f"{self.doc.path}:{line}" if line else str(self.doc.path)
        return RulesError(f"{where}: {_format_loc(loc)}: {message}")


def _format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(exc: ValidationError, doc: YamlDocument) -> str:
    """One line for the first error, as monitor.config.describe_validation_error."""
    first = exc.errors()[0]
    raw = list(first["loc"])
    # pydantic puts the union member into the location: rules[2].news.severity means
    # rules[2].severity; steps such as "function-after[...]" are dropped too.
    loc: list[str | int] = []
    for i, part in enumerate(raw):
        if isinstance(part, int):
            loc.append(part)
        elif "[" in part or (part in RULE_KINDS and i > 0 and isinstance(raw[i - 1], int)):
            continue
        elif part in ("ref", "spec") and i > 0 and raw[i - 1] == "move":
            continue  # the two shapes of JoinedRule.move
        else:
            loc.append(part)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("kind")
        given = first.get("input", {})
        kind = given.get("kind") if isinstance(given, dict) else None
        expected = ", ".join(RULE_KINDS)
        message = (
            f"unknown rule kind {kind!r} (use {expected})"
            if kind is not None
            else f"missing (use {expected})"
        )
    line = doc.line_of(loc)
    where = f"{doc.path}:{line}" if line else str(doc.path)
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {_format_loc(loc)}: {message}{more}"


def parse_rules_file(path: Path) -> tuple[RulesFile, YamlDocument]:
    """Read and validate one rules file on its own (no merge, no cross-references)."""
    try:
        doc = load_yaml(path)
    except YamlFileError as exc:
        raise RulesError(str(exc)) from exc
    if not isinstance(doc.data, dict):
        raise RulesError(
            f"{path}:1: (top level): must be a mapping of entities, themes, rules, disabled"
        )
    try:
        parsed = RulesFile.model_validate(doc.data)
    except ValidationError as exc:
        raise RulesError(_describe(exc, doc)) from exc
    return parsed, doc


def load_rules(path: Path | None = None) -> Ruleset:
    """The default rules, with the file at ``path`` (if any) merged over them.

    Same id replaces, ``disabled`` removes rules; the result is cross-checked.
    Raises :class:`RulesError` with one line, ``file:line: field: problem``.
    """
    default = resources.files("monitor.rules").joinpath(DEFAULT_RULES)
    with resources.as_file(default) as default_path:
        files = [parse_rules_file(default_path)]
    if path is not None:
        files.append(parse_rules_file(path))
    return merge_rules(files)


def merge_rules(files: Sequence[tuple[RulesFile, YamlDocument]]) -> Ruleset:
    """Merge parsed files in order (later ids replace earlier ones) and cross-check."""
    entities: dict[str, tuple[Entity, _Origin]] = {}
    themes: dict[str, tuple[Theme, _Origin]] = {}
    rules: dict[str, tuple[AnyRule, _Origin]] = {}
    anchors: dict[str, tuple[Anchor, _Origin]] = {}
    scoring: tuple[Scoring, _Origin] | None = None
    disabled: dict[str, _Origin] = {}
    for parsed, doc in files:
        if parsed.scoring is not None:
            merged = parsed.scoring if scoring is None else parsed.scoring.over(scoring[0])
            scoring = (merged, _Origin(doc, ("scoring",)))
        lists: list[tuple[str, Sequence[Entity | Anchor | Theme | Rule], dict[str, Any]]] = [
            ("entities", parsed.entities, entities),
            ("anchors", parsed.anchors, anchors),
            ("themes", parsed.themes, themes),
            ("rules", parsed.rules, rules),
        ]
        for name, items, target in lists:
            seen: set[str] = set()
            for index, item in enumerate(items):
                origin = _Origin(doc, (name, index))
                if item.id in seen:
                    raise origin.error(["id"], f"{item.id!r} is defined twice in this file")
                seen.add(item.id)
                target[item.id] = (item, origin)
        for index, rule_id in enumerate(parsed.disabled):
            disabled[rule_id] = _Origin(doc, ("disabled", index))
        # A file may only disable what exists once it is merged (typos would be silent).
        for rule_id, origin in disabled.items():
            if rule_id not in rules:
                raise origin.error([], f"no rule {rule_id!r} to disable")
    for rule_id in disabled:
        rules.pop(rule_id, None)
    _check_references(entities, themes, rules, disabled)
    _check_anchors(entities, anchors, themes, scoring)
    return Ruleset(
        entities={k: v for k, (v, _) in entities.items()},
        themes={k: v for k, (v, _) in themes.items()},
        rules={k: v for k, (v, _) in rules.items()},
        files=tuple(doc.path for _, doc in files),
        anchors={k: v for k, (v, _) in anchors.items()},
        scoring=scoring[0] if scoring is not None else Scoring(),
    )


ENTITY_KINDS = ("company", "person", "body")


def _entity_ref_problem(ref: str, entities: Mapping[str, Any], sectors: set[str]) -> str | None:
    """Why ``ref`` (an id, ``sector:TAG`` or ``kind:KIND``) names no entity, or None."""
    if ref.startswith("sector:"):
        tag = ref.removeprefix("sector:")
        return None if tag in sectors else f"no entity or theme has sector {tag!r}"
    if ref.startswith("kind:"):
        kind = ref.removeprefix("kind:")
        if kind in ENTITY_KINDS:
            return None
        return f"unknown entity kind {kind!r} (use {', '.join(ENTITY_KINDS)})"
    return None if ref in entities else f"unknown entity {ref!r} (or use sector:TAG, kind:KIND)"


def _check_anchors(
    entities: Mapping[str, tuple[Entity, _Origin]],
    anchors: Mapping[str, tuple[Anchor, _Origin]],
    themes: Mapping[str, tuple[Theme, _Origin]],
    scoring: tuple[Scoring, _Origin] | None,
) -> None:
    sectors = {s for e, _ in entities.values() for s in own_sectors(e)}
    sectors |= {s for t, _ in themes.values() for s in t.sectors}
    for anchor, origin in anchors.values():
        if anchor.id in entities or anchor.id in themes:
            raise origin.error(["id"], f"{anchor.id!r} is also the id of an entity or theme")
        for index, ref in enumerate(anchor.entities):
            if problem := _entity_ref_problem(ref, entities, sectors):
                raise origin.error(["entities", index], problem)
        for index, ref in enumerate(anchor.themes):
            if ref not in themes:
                raise origin.error(["themes", index], f"unknown theme {ref!r}")
    for theme, origin in themes.values():
        if theme.generic is not None and theme.generic.requires not in anchors:
            raise origin.error(
                ["generic", "requires"], f"unknown anchor {theme.generic.requires!r}"
            )
    if scoring is not None:
        weights, origin = scoring
        for ref in weights.anchors:
            if ref not in anchors:
                raise origin.error(["anchors", ref], f"unknown anchor {ref!r}")
        for ref in weights.entities:
            if problem := _entity_ref_problem(ref, entities, sectors):
                raise origin.error(["entities", ref], problem)


def _check_references(
    entities: Mapping[str, tuple[Entity, _Origin]],
    themes: Mapping[str, tuple[Theme, _Origin]],
    rules: Mapping[str, tuple[AnyRule, _Origin]],
    disabled: Mapping[str, _Origin],
) -> None:
    sectors = {s for e, _ in entities.values() for s in own_sectors(e)}
    sectors |= {s for t, _ in themes.values() for s in t.sectors}

    # A hit names an entity or a theme by id alone, so the two must not share one.
    for theme, origin in themes.values():
        if theme.id in entities:
            raise origin.error(["id"], f"{theme.id!r} is also the id of an entity")

    # Two entities answering to one alias would make a mention ambiguous.
    owners: dict[str, str] = {}
    for entity, origin in entities.values():
        for list_name in ("aliases", "excludes"):
            for index, alias in enumerate(getattr(entity, list_name)):
                key = fold_term(alias).replace(" ", "")
                owner = owners.setdefault(key, entity.id)
                if owner != entity.id:
                    raise origin.error(
                        [list_name, index], f"{alias!r} is already a name of entity {owner!r}"
                    )

    def check_sectors(origin: _Origin, where: Sequence[str | int], tags: Sequence[str]) -> None:
        for index, tag in enumerate(tags):
            if tag not in sectors:
                raise origin.error([*where, index], f"no entity or theme has sector {tag!r}")

    for rule, origin in rules.values():
        if isinstance(rule, NewsRule):
            for list_name, index, ref in rule.themes.refs():
                if ref not in themes:
                    raise origin.error(["themes", list_name, index], f"unknown theme {ref!r}")
            for list_name, index, ref in rule.entities.refs():
                if problem := _entity_ref_problem(ref, entities, sectors):
                    raise origin.error(["entities", list_name, index], problem)
        elif isinstance(rule, MoveRule):
            check_sectors(origin, ["sectors"], rule.sectors)
        elif isinstance(rule, JoinedRule | DisclosureMoveRule):
            if isinstance(rule.move, MoveSpec):
                check_sectors(origin, ["move", "sectors"], rule.move.sectors)
            else:
                _check_rule_ref(rule.move, "move", rules, disabled, origin, ["move"])
            if isinstance(rule, JoinedRule):
                for index, ref in enumerate(rule.news):
                    _check_rule_ref(ref, "news", rules, disabled, origin, ["news", index])
            else:
                for index, ref in enumerate(rule.disclosures):
                    where: list[str | int] = ["disclosures", index]
                    _check_rule_ref(ref, "disclosure", rules, disabled, origin, where)


def _check_rule_ref(
    ref: str,
    kind: str,
    rules: Mapping[str, tuple[AnyRule, _Origin]],
    disabled: Mapping[str, _Origin],
    origin: _Origin,
    where: Sequence[str | int],
) -> None:
    if ref in disabled:
        # Reported where it was disabled: that is the line the user just wrote.
        raise disabled[ref].error(
            [], f"rule {ref!r} is used by joined rule {_origin_id(origin)!r}: disable that too"
        )
    target = rules.get(ref)
    if target is None:
        raise origin.error(where, f"unknown {kind} rule {ref!r}")
    if target[0].kind != kind:
        raise origin.error(where, f"rule {ref!r} is a {target[0].kind} rule, not a {kind} rule")


def _origin_id(origin: _Origin) -> str:
    """The id written at ``origin`` (for messages about another item)."""
    data: Any = origin.doc.data
    for part in origin.loc:
        data = data[part]
    return str(data.get("id", "?")) if isinstance(data, dict) else "?"
