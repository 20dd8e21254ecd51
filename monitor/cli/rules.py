"""``kmon rules`` (check, test, replay) and ``kmon signals`` (list, show)."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from monitor.cli.common import ROW_ID, State, fail, format_option, query, to_json, when
from monitor.cli.output import Format, clip, render
from monitor.kinds import SIGNAL_KINDS
from monitor.severity import SEVERITIES, SEVERITY_RANK
from monitor.timefmt import kst, kst_iso, utcnow

RULE_KINDS = ("news", "move", "joined", "source_health", "disclosure", "disclosure_move")


def _load(state: State | None, file: Path | None) -> Any:
    """The default rules with ``file`` over them (else the configured file)."""
    from monitor.rules import RulesError
    from monitor.rules.model import load_rules

    if file is None and state is not None:
        file = state.settings.rules.file
    try:
        return load_rules(file)
    except RulesError as exc:
        fail(f"rules error: {exc}", code=2)


rules_file_option = click.option(
    "--rules",
    "rules_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A rules file over the defaults (default: the configured `rules.file`).",
)


@click.group()
def rules() -> None:
    """The rules that tag news and moves: check, try and replay them."""


@rules.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def rules_check(state: State, file: Path | None) -> None:
    """Validate FILE merged over the default rules (else the configured file, else the
    defaults alone); exit 2 with `file:line: field: problem` if it is not usable."""
    if file is not None and not file.is_file():
        fail(f"rules error: {file}: no such file", code=2)
    ruleset = _load(state if file is None else None, file)
    kinds = {kind: 0 for kind in RULE_KINDS}
    for rule in ruleset.rules.values():
        kinds[rule.kind] += 1
    counts = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    name = str(file or state.settings.rules.file or "default rules")
    click.echo(
        f"{name}: ok ({len(ruleset.entities)} entities, {len(ruleset.themes)} themes, "
        f"{len(ruleset.rules)} rules: {counts})"
    )


def _hitsto_json(hits: Any) -> list[dict[str, Any]]:
    return [
        {"surface": h.surface, "term": h.term, "field": h.field, "start": h.start, "end": h.end}
        for h in hits
    ]


@rules.command("eval")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@rules_file_option
@click.option(
    "--min-score",
    type=click.IntRange(0, 100),
    default=0,
    help="Count a line as an alert only at this score or more (a route's min_score).",
)
@click.option("--min-recall", type=click.FloatRange(0, 100), help="Exit 1 below this recall (%).")
@click.option(
    "--min-precision", type=click.FloatRange(0, 100), help="Exit 1 below this precision (%)."
)
@click.option(
    "--max-fp", type=click.FloatRange(0, 100), help="Exit 1 above this false-positive rate (%)."
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_obj
def rules_eval(
    state: State,
    files: tuple[Path, ...],
    rules_file: Path | None,
    min_score: int,
    min_recall: float | None,
    min_precision: float | None,
    max_fp: float | None,
    fmt: str,
) -> None:
    """Judge the rules on labelled headlines: FILE has one a line, `+` (wanted) or `-`,
    a TAB, the text, and optionally a TAB and its class (theme or kind of trap).

    Prints precision, recall and the false-positive rate overall, per class and per
    rule, at each score, and every miss and false hit with what fired. Exit 1 when a
    --min-recall, --min-precision or --max-fp is not met.
    """
    from monitor.rules import RulesError
    from monitor.rules.labelled import counts, judge, read_labelled, report

    ruleset = _load(state, rules_file)
    cases = []
    for file in files:
        try:
            with file.open(encoding="utf-8-sig") as handle:  # a BOM is no label
                cases += read_labelled(handle, str(file))
        except OSError as exc:
            fail(f"rules eval: {file}: {exc.strerror or exc}", code=2)
        except UnicodeDecodeError:
            fail(f"rules eval: {file}: not UTF-8 text", code=2)
        except RulesError as exc:
            fail(f"rules eval: {exc}", code=2)
    if not cases:
        fail("rules eval: no labelled lines", code=2)
    outcomes = judge(cases, ruleset)
    figures = report(outcomes, min_score=min_score)
    unmet = []
    # From the counts, not the rounded ratios: 94.996 % is not 95 %.
    wanted, unwanted, tp, fp = counts(outcomes, min_score)
    for name, part, whole, limit, below in (
        ("recall", tp, wanted, min_recall, True),
        ("precision", tp, tp + fp, min_precision, True),
        ("false-positive rate", fp, unwanted, max_fp, False),
    ):
        if limit is None:
            continue
        pct = part / whole * 100 if whole else None
        if pct is None or (pct < limit if below else pct > limit):
            shown = "n/a" if pct is None else f"{pct:.1f}%"
            unmet.append(f"{name} {shown} {'<' if below else '>'} {limit:g}%")
    figures["unmet"] = unmet
    if fmt == "json":
        click.echo(to_json(figures))
    else:
        _print_eval(figures, min_score)
    sys.exit(1 if unmet else 0)


def _pct(value: object) -> str:
    return "  n/a" if value is None else f"{float(value) * 100:5.1f}%"  # type: ignore[arg-type]


def _print_eval(figures: dict[str, Any], min_score: int) -> None:
    f = figures
    at = f" at score ≥ {min_score}" if min_score else ""
    click.echo(
        f"{f['positives']} wanted, {f['negatives']} unwanted{at}: "
        f"precision {_pct(f['precision']).strip()}, recall {_pct(f['recall']).strip()}, "
        f"false positives {_pct(f['false_positive_rate']).strip()} "
        f"({f['true_positives']} caught, {len(f['misses'])} missed, "
        f"{f['false_positives']} false)"
    )
    click.echo("\nby class:")
    for name, c in f["by_class"].items():
        what = "caught" if c["wanted"] else "false"
        sign = "+" if c["wanted"] else "-"
        share = _pct(c["alerts"] / c["lines"])
        click.echo(f"  {sign} {name:<28} {c['alerts']:>4}/{c['lines']:<4} {what} {share}")
    click.echo("\nby rule:")
    for rule_id, c in f["by_rule"].items():
        click.echo(
            f"  {rule_id:<28} {c['alerts']:>4} alerts, {c['wanted']:>4} wanted, "
            f"precision {_pct(c['precision'])}"
        )
    click.echo("\nby score (alerts at the score or more):")
    for row in f["by_score"]:
        alerts = row["true_positives"] + row["false_positives"]
        click.echo(
            f"  ≥ {row['min_score']:>3}: precision {_pct(row['precision'])} "
            f"recall {_pct(row['recall'])} false positives "
            f"{_pct(row['false_positive_rate'])} ({alerts} alerts)"
        )
    for title, key in (("missed", "misses"), ("false hits", "false_hits")):
        if f[key]:
            click.echo(f"\n{title}:")
        for line in f[key]:
            fired = (
                "; ".join(f"{r['rule_id']}: {r['why']}" for r in line["fired"]) or "nothing fired"
            )
            score = f" [score {line['score']}]" if line["score"] is not None else ""
            click.echo(f"  {line['where']} ({line['class'] or '-'}){score} {line['text']}")
            click.echo(f"      {fired}")
    for problem in f["unmet"]:
        click.echo(f"unmet: {problem}")


@rules.command("test")
@click.argument("text")
@click.option("--summary", default="", help="A summary to match besides TEXT (the title).")
@click.option("--source", help="The source name, for rules limited to sources.")
@click.option("--language", help="ko or en (default: Korean when TEXT has Hangul).")
@click.option(
    "--source-type",
    type=click.Choice(["news", "government"]),
    help="The source's type, for rules and weights that take source_types.",
)
@rules_file_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_obj
def rules_test(
    state: State,
    text: str,
    summary: str,
    source: str | None,
    language: str | None,
    source_type: str | None,
    rules_file: Path | None,
    fmt: str,
) -> None:
    """Which news rules fire on TEXT (a headline), and why; `-` reads one headline a
    line from standard input (one line of output, or one JSON object, for each).

    Exit status 0 when a rule fires (on any line), 1 when none does (like grep).
    """
    from monitor.rules.match import tag
    from monitor.rules.score import score_news, severity_of

    ruleset = _load(state, rules_file)
    seen = {"source": source, "language": language, "source_type": source_type}
    if text == "-":
        any_fired = False
        for raw in sys.stdin:
            line = raw.strip()
            if not line:
                continue
            tagging = tag(line, summary, ruleset, **seen)
            fired = tagging.news_rules_fired
            any_fired = any_fired or bool(fired)
            points = (
                score_news(
                    tagging,
                    [f.rule_id for f in fired],
                    ruleset,
                    source=source,
                    source_type=source_type,
                ).points
                if fired
                else None
            )
            if fmt == "json":
                record = {
                    "text": line,
                    "fired": [{"rule_id": f.rule_id, "why": f.explanation} for f in fired],
                    "score": points,
                }
                click.echo(json.dumps(record, ensure_ascii=False))  # one object a line
            elif fired:
                rules_fired = ", ".join(f.rule_id for f in fired)
                click.echo(f"fires\t{points}\t{rules_fired}\t{line}")
            else:
                click.echo(f"none\t\t\t{line}")
        sys.exit(0 if any_fired else 1)
    tagging = tag(text, summary, ruleset, **seen)
    fired = tagging.news_rules_fired
    score = (
        score_news(
            tagging, [f.rule_id for f in fired], ruleset, source=source, source_type=source_type
        )
        if fired
        else None
    )
    if fmt == "json":
        record = {
            "text": text,
            "fired": [{"rule_id": f.rule_id, "why": f.explanation} for f in fired],
            "score": score.points if score else None,
            "score_parts": [[p.label, p.points] for p in score.parts] if score else [],
            "themes": {k: _hitsto_json(v) for k, v in tagging.themes.items()},
            "entities": {k: _hitsto_json(v) for k, v in tagging.entities.items()},
            "anchors": {k: _hitsto_json(v) for k, v in tagging.anchors.items()},
            "tickers": sorted(tagging.tickers),
            "sectors": sorted(tagging.sectors),
        }
        click.echo(to_json(record))
    else:
        for label, found in (
            ("theme", tagging.themes),
            ("entity", tagging.entities),
            ("anchor", tagging.anchors),
        ):
            for key, hits in found.items():
                spots = ", ".join(f"{h.surface!r} at {h.field}[{h.start}:{h.end}]" for h in hits)
                click.echo(f"{label} {key}: {spots}")
        if tagging.tickers:
            click.echo(f"tickers: {', '.join(sorted(tagging.tickers))}")
        for f in fired:
            severity = ruleset.rules[f.rule_id].severity
            click.echo(f"fires {f.rule_id} [{severity}]: {f.explanation}")
        if score is not None:
            click.echo(f"score: {score.describe()}")
            lead = max(
                (ruleset.rules[f.rule_id].severity for f in fired), key=SEVERITY_RANK.__getitem__
            )
            click.echo(f"signal severity: {severity_of(score.points, ruleset, lead)}")
        if not fired:
            click.echo("no news rule fires" + ("" if tagging.themes else " (no theme matched)"))
    sys.exit(0 if fired else 1)


def _signal_record(signal: Any, *, with_explanation: bool) -> dict[str, Any]:
    from monitor.db.signals import headline, signal_tickers
    from monitor.rules.explanation import to_json as explanation_json

    record: dict[str, Any] = {
        "event_time": kst_iso(signal.event_time),
        "kind": signal.kind,
        "rule": signal.rule_id,
        "severity": signal.severity,
        "subject": signal.subject,
        "tickers": signal_tickers(signal),
        "headline": headline(signal),
        "dedup_key": signal.dedup_key,
    }
    if with_explanation:
        record["explanation"] = explanation_json(signal.explanation)
    return record


@rules.command("replay")
@click.option(
    "--since", callback=when, default="30d", show_default=True, help="From (30d, 2025-06-01 …)."
)
@click.option("--until", callback=when, help="Up to (default: now).")
@rules_file_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_obj
def rules_replay(
    state: State,
    since: datetime,
    until: datetime | None,
    rules_file: Path | None,
    fmt: str,
) -> None:
    """Run the rules over stored items and quotes; store and send nothing.

    A session of a ticker with no stored quote is judged on its daily bar, as the
    session's closing quote (see `kmon quotes backfill`). Prints each signal that would
    have been stored, with its explanation, and the hits of every rule, so that a rule
    can be tuned before it is switched on.
    """
    from monitor.ingest.replay import hit_table, replay
    from monitor.rules.explain import describe

    ruleset = _load(state, rules_file)
    result = query(state, lambda session: replay(session, ruleset, since=since, until=until))
    if fmt == "json":
        click.echo(
            to_json(
                {
                    "since": kst_iso(since),
                    "until": kst_iso(until) if until else None,
                    "items": result.items,
                    "quotes": result.quotes,
                    "bar_quotes": result.bar_quotes,
                    "signals": [_signal_record(s, with_explanation=True) for s in result.signals],
                    "not_claimed": [
                        {"ticker": t, "session": d.isoformat(), "why": why}
                        for t, d, why in result.not_claimed
                    ],
                    "hits": {row["rule"]: row["hits"] for row in hit_table(result, ruleset)},
                }
            )
        )
        return
    bars = f" and {result.bar_quotes} daily bars as closing quotes" if result.bar_quotes else ""
    click.echo(
        f"replayed {result.items} items and {result.quotes} quotes{bars} from {kst(since)} KST"
        f" to {kst(until or utcnow())} KST: {len(result.signals)} signals would be stored"
    )
    for signal in result.signals:
        click.echo("")
        click.echo(
            f"{kst(signal.event_time)}  {signal.kind}  {signal.rule_id} [{signal.severity}]"
            f"  {signal.subject}"
        )
        for line in describe(signal.explanation):
            click.echo(f"  {line}")
    if result.not_claimed:
        click.echo("")
        for ticker, day, why in result.not_claimed:
            click.echo(f"{day}  {ticker}  {why}")
    click.echo("")
    click.echo(render(hit_table(result, ruleset), "table"))


# --- signals ---------------------------------------------------------------------


@click.group()
def signals() -> None:
    """Signals the rules stored."""


def _ticker(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[0-9A-Za-z.^]{1,16}", value):
        raise click.BadParameter(f"not a ticker: {value!r}")
    return value


@signals.command("list")
@click.option("--since", callback=when, help="Event time at or after (2d, 2025-06-18 …).")
@click.option("--until", callback=when, help="Event time before.")
@click.option("--kind", type=click.Choice(SIGNAL_KINDS))
@click.option("--ticker", callback=_ticker, help="Signals about this ticker (035420, KOSPI …).")
@click.option("--rule", help="Only this rule id.")
@click.option("--severity", type=click.Choice(SEVERITIES))
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@format_option
@click.pass_obj
def signals_list(
    state: State,
    since: datetime | None,
    until: datetime | None,
    kind: str | None,
    ticker: str | None,
    rule: str | None,
    severity: str | None,
    limit: int,
    fmt: Format,
) -> None:
    """Signals newest first (by event time); times in KST."""
    from monitor.db import signals as repo

    flt = repo.SignalFilter(
        since=since,
        until=until,
        kind=kind,
        ticker=ticker,
        rule=rule,
        severity=severity,
        limit=limit,
    )
    rows = query(state, lambda session: repo.list_signals(session, flt))
    full = [_row_record(row) for row in rows]
    table = [
        {
            "id": row.id,
            "event (KST)": kst(row.event_time),
            "kind": row.kind,
            "rule": row.rule_id,
            "severity": row.severity,
            "subject": row.subject,
            "headline": clip(row.headline, 60),
        }
        for row in rows
    ]
    click.echo(render(full, fmt, table_rows=table))


def _row_record(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_time": kst_iso(row.event_time),
        "created_at": kst_iso(row.created_at),
        "kind": row.kind,
        "rule": row.rule_id,
        "severity": row.severity,
        "subject": row.subject,
        "tickers": row.tickers.split(),
        "headline": row.headline,
        "dedup_key": row.dedup_key,
    }


@signals.command("show")
@click.argument("signal_id", type=ROW_ID)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_obj
def signals_show(state: State, signal_id: int, fmt: str) -> None:
    """One signal with its full explanation and the items behind it."""
    from monitor.db import signals as repo
    from monitor.rules.explain import describe
    from monitor.rules.explanation import parse

    found = query(state, lambda session: repo.get_signal(session, signal_id))
    if found is None:
        fail(f"no signal with id {signal_id}")
    row, items = found
    record = _row_record(row)
    linked = [
        {
            "item_id": item.id,
            "source": item.source,
            "published_at": kst_iso(item.published_at),
            "attached_at": kst_iso(item.attached_at),
            "title": item.title,
            "url": item.url,
        }
        for item in items
    ]
    if fmt == "json":
        click.echo(to_json({**record, "explanation": row.explanation, "items": linked}))
        return
    for key, value in record.items():
        shown = " ".join(value) if isinstance(value, list) else value
        click.echo(f"{key + ':':<12} {shown}")
    click.echo("")
    for line in describe(parse(row.kind, row.explanation)):
        click.echo(line)
    if linked:
        click.echo("")
        click.echo(f"items ({len(linked)}):")
        for item in linked:
            click.echo(
                f"  #{item['item_id']} {item['published_at']} {item['source']}: {item['title']}"
            )


@signals.command("chart")
@click.argument("signal_id", type=ROW_ID)
@click.option("-o", "--output", required=True, help="The PNG file to write; - for stdout.")
@click.pass_obj
def signals_chart(state: State, signal_id: int, output: str) -> None:
    """The chart a move alert carries: the ticker over the signal's session, the KOSPI
    beside it and the news marked."""
    from monitor.alerts.charting import CHART_KINDS, signal_chart
    from monitor.chart import available, render_async

    if not available():
        fail("charts need the charts extra: pip install 'kmon[charts]'", code=2)
    from monitor.cli.charts import chart_names, check_output, write_png
    from monitor.db import signals as repo

    check_output(output)
    names = chart_names(state)

    async def draw(session: Any) -> bytes | str:
        found = await repo.get_signal(session, signal_id)
        if found is None:
            return f"no signal with id {signal_id}"
        chart = await signal_chart(session, signal_id, names=names)
        if chart is None:
            kinds = ", ".join(sorted(CHART_KINDS))
            return f"signal {signal_id} is a {found[0].kind} signal: charts are for {kinds}"
        return (await render_async(chart)).png

    result = query(state, draw)
    if isinstance(result, str):
        fail(result)
    write_png(result, output)
