"""The default rules on the labelled sets of ``tests/fixtures/judgement``, through the
real ``kmon rules eval``, with the aims of docs/rules.md ("How good the default rules
are"). The held-out parts were written apart from the rules and are never tuned on: a
change to the rules that loses them fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli.main import main

SETS = Path(__file__).resolve().parents[2] / "fixtures" / "judgement"


def evaluate(pattern: str, *limits: str) -> tuple[int, dict[str, object]]:
    files = sorted(str(p) for p in SETS.glob(pattern))
    assert files, pattern
    result = CliRunner().invoke(
        main, ["rules", "eval", *files, *limits, "--format", "json"], catch_exceptions=False
    )
    return result.exit_code, json.loads(result.output)


@pytest.mark.parametrize(
    ("pattern", "limits"),
    [
        # A trap-heavy set: recall ≥ 95 % with false positives ≤ 3 %.
        ("headlines.tune*.tsv", ("--min-recall", "95", "--max-fp", "3")),
        # Ordinary days: alert precision ≥ 85 % at recall ≥ 95 %.
        ("day.tune*.tsv", ("--min-precision", "85", "--min-recall", "95")),
        ("day.heldout*.tsv", ("--min-precision", "85", "--min-recall", "95")),
        ("headlines.heldout.tsv", ("--min-recall", "95", "--max-fp", "3")),
    ],
)
def test_the_default_rules_meet_their_aims(pattern: str, limits: tuple[str, ...]) -> None:
    code, report = evaluate(pattern, *limits)
    assert code == 0, report["unmet"]
    assert report["unmet"] == []


def test_the_sets_are_what_the_docs_say() -> None:
    _, tuning = evaluate("headlines.tune*.tsv")
    _, held_out = evaluate("headlines.heldout.tsv")
    _, days = evaluate("day.heldout*.tsv")
    assert tuning["positives"] + tuning["negatives"] >= 2000  # type: ignore[operator]
    assert held_out["positives"] + held_out["negatives"] >= 500  # type: ignore[operator]
    assert days["positives"] + days["negatives"] >= 590  # type: ignore[operator]
    # Every theme and every trap class is in the held-out headlines.
    classes = set(held_out["by_class"])  # type: ignore[arg-type]
    assert {"policy-move", "ai-stock-market", "sovereign-ai", "ai-basic-act"} <= classes
    traps = {c for c in classes if c.startswith("trap:")}
    assert len(traps) >= 15
