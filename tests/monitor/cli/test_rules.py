"""`kmon rules check` and `kmon rules test`: no database needed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from monitor.cli.main import main
from monitor.rules.model import load_rules


def kmon(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_check_the_default_rules() -> None:
    result = kmon("rules", "check")
    assert result.exit_code == 0
    assert result.output.startswith("default rules: ok (")
    kinds = Counter(r.kind for r in load_rules(None).rules.values())
    counts = ", ".join(f"{kinds[k]} {k}" for k in ("news", "move", "joined", "source_health"))
    assert counts in result.output and kinds["news"] >= 5


def test_check_a_user_file_merged_over_the_defaults(tmp_path: Path) -> None:
    good = tmp_path / "mine.yaml"
    good.write_text(
        "themes:\n"
        "  - {id: quantum, name_en: Quantum, name_ko: 양자,\n"
        "     terms: [양자컴퓨터, quantum computer]}\n"
        "rules:\n"
        "  - {id: quantum-news, kind: news, severity: info, themes: {any: [quantum]}}\n"
        "disabled: [ai-platform-market]\n",
        encoding="utf-8",
    )
    result = kmon("rules", "check", str(good))
    assert result.exit_code == 0, result.output
    news = len(load_rules(None).news_rules())
    assert f"{good}: ok (" in result.output and f"{news} news" in result.output

    fires = kmon("rules", "test", "정부, 양자컴퓨터 육성 전략 발표", "--rules", str(good))
    assert fires.exit_code == 0
    assert "fires quantum-news [info]" in fires.output


def test_check_names_the_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - id: x\n    kind: news\n    severity: loud\n"
        "    themes: {any: [sovereign-ai]}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["rules", "check", str(bad)])
    assert result.exit_code == 2
    assert f"rules error: {bad}:4: rules[0]" in result.output
    assert "severity" in result.output
    missing = CliRunner().invoke(main, ["rules", "check", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_a_rule_fires_like_grep_finds() -> None:
    hit = kmon("rules", "test", "하정우 네이버 AI센터장, 대통령실 AI미래기획수석 임명")
    assert hit.exit_code == 0
    assert "fires ai-appointment [warning]" in hit.output
    assert "entity ha-jung-woo: '하정우' at title[0:3]" in hit.output
    assert "tickers: 035420" in hit.output

    miss = kmon("rules", "test", "카카오와 네이버, 나란히 하락")
    assert miss.exit_code == 1
    assert "no news rule fires (no theme matched)" in miss.output
    # The mention still resolves the entities.
    assert "entity kakao" in miss.output and "entity naver" in miss.output


def test_json_for_scripts() -> None:
    result = kmon(
        "rules", "test", "네이버 주가 급등", "--summary", "하정우 AI 수석 임명 영향",
        "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert [f["rule_id"] for f in report["fired"]] == [
        "ai-policy",
        "ai-policy-platform",
        "ai-appointment",
        "ai-platform-market",
        "ai-stock-market",
        "ai-stock-named",
        "ai-post",
    ]
    (hit,) = report["entities"]["ha-jung-woo"]
    assert (hit["field"], hit["start"], hit["end"]) == ("summary", 0, 3)
    none = kmon("rules", "test", "SAID the analyst", "--format", "json")
    assert none.exit_code == 1 and json.loads(none.output)["fired"] == []


def test_a_broken_configured_rules_file_stops_config_check(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: y, kind: joined, move: nope, news: []}\n", encoding="utf-8")
    config = tmp_path / "kmon.yaml"
    config.write_text("rules:\n  file: rules.yaml\nsources: []\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["config", "check", str(config)])
    assert result.exit_code == 2
    assert f"rules error: {rules}:2:" in result.output


def test_test_reads_one_headline_a_line_from_standard_input() -> None:
    lines = "정부, GPU 1만장 확보\n\n오늘의 날씨\n"
    result = CliRunner().invoke(main, ["rules", "test", "-"], input=lines)
    assert result.exit_code == 0
    fired, silent = result.output.splitlines()
    assert fired.startswith("fires\t") and fired.endswith("\tai-policy\t정부, GPU 1만장 확보")
    assert silent == "none\t\t\t오늘의 날씨"
    as_json = CliRunner().invoke(main, ["rules", "test", "-", "--format", "json"], input=lines)
    records = [json.loads(line) for line in as_json.output.splitlines()]
    assert [r["text"] for r in records] == ["정부, GPU 1만장 확보", "오늘의 날씨"]
    assert records[0]["score"] > 0 and records[1] == {
        "text": "오늘의 날씨",
        "fired": [],
        "score": None,
    }
    nothing = CliRunner().invoke(main, ["rules", "test", "-"], input="오늘의 날씨\n")
    assert nothing.exit_code == 1


LABELLED = (
    "# a comment, then a blank line\n"
    "\n"
    "+\t정부, GPU 1만장 확보\tgpu-compute\n"
    "+\t과기정통부, AI 기본법 시행령 입법예고\tai-basic-act\n"
    "+\t네이버 주가 급등…외국인 순매수\n"
    "-\tRTX 5090 그래픽카드 품귀\ttrap:gaming-gpu\n"
    "-\t배우 하정우 주연 영화 개봉\ttrap:actor\n"
    "-\t김앤장, AI 기본법 세미나 개최\ttrap:seminar\n"
    "+\t오늘의 날씨\tgeneral\n"  # labelled wanted, to make a miss
)


def test_eval_reports_precision_recall_and_every_mistake(tmp_path: Path) -> None:
    path = tmp_path / "set.tsv"
    path.write_text(LABELLED, encoding="utf-8")
    result = kmon("rules", "eval", str(path), "--format", "json")
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert (report["positives"], report["negatives"]) == (4, 3)
    assert (report["true_positives"], report["false_positives"]) == (3, 0)
    assert report["recall"] == 0.75 and report["precision"] == 1.0
    assert report["false_positive_rate"] == 0.0
    assert [m["text"] for m in report["misses"]] == ["오늘의 날씨"]
    assert report["misses"][0]["where"] == f"{path}:9"
    assert report["false_hits"] == []
    assert report["by_class"]["trap:actor"] == {"wanted": False, "lines": 1, "alerts": 0}
    assert report["by_class"]["(wanted)"] == {"wanted": True, "lines": 1, "alerts": 1}
    assert report["by_rule"]["ai-policy"]["wanted"] == 2
    # Precision and recall at each score the caught lines reached, rising scores.
    scores = [row["min_score"] for row in report["by_score"]]
    assert scores == sorted(scores) and report["by_score"][0]["recall"] == 0.75
    # Thresholds: exit 1, with the unmet ones named; text output lists the miss.
    strict = kmon("rules", "eval", str(path), "--min-recall", "95", "--max-fp", "3")
    assert strict.exit_code == 1
    assert "unmet: recall 75.0% < 95%" in strict.output
    assert f"{path}:9 (general) 오늘의 날씨" in strict.output
    loose = kmon("rules", "eval", str(path), "--min-recall", "70", "--min-precision", "90")
    assert loose.exit_code == 0


def test_eval_with_a_draft_rules_file_and_a_score_threshold(tmp_path: Path) -> None:
    path = tmp_path / "set.tsv"
    path.write_text(LABELLED, encoding="utf-8")
    draft = tmp_path / "draft.yaml"
    draft.write_text("disabled: [ai-platform-market, ai-stock-market]\n", encoding="utf-8")
    without_market = json.loads(
        kmon("rules", "eval", str(path), "--rules", str(draft), "--format", "json").output
    )
    assert without_market["true_positives"] == 2  # the Naver move line is no longer caught
    top = max(row["min_score"] for row in without_market["by_score"])
    high = json.loads(
        kmon("rules", "eval", str(path), "--min-score", str(top), "--format", "json").output
    )
    assert 1 <= high["true_positives"] < 3


def test_eval_refuses_a_bad_line_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("+\t좋은 줄\n?\t나쁜 줄\n", encoding="utf-8")
    result = kmon("rules", "eval", str(path))
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and f"{path}:2: expected '+' or '-'" in result.output
    missing = kmon("rules", "eval", str(tmp_path / "nowhere.tsv"))
    assert missing.exit_code == 2 and "nowhere.tsv" in missing.output
    empty = tmp_path / "empty.tsv"
    empty.write_text("# nothing\n", encoding="utf-8")
    assert kmon("rules", "eval", str(empty)).exit_code == 2


def test_eval_reads_a_file_that_starts_with_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.tsv"
    path.write_text("\ufeff+\t정부, GPU 1만장 확보\n-\t오늘의 날씨\n", encoding="utf-8")
    report = json.loads(kmon("rules", "eval", str(path), "--format", "json").output)
    assert (report["positives"], report["true_positives"]) == (1, 1)


def test_test_shows_the_severity_the_score_earns_and_takes_a_source_type() -> None:
    plain = kmon("rules", "test", "과기정통부, AI 기본법 시행령 입법예고")
    assert "signal severity: warning" in plain.output
    official = kmon(
        "rules", "test", "과기정통부, AI 기본법 시행령 입법예고", "--source-type", "government",
        "--format", "json",
    )  # fmt: skip
    parts = dict(json.loads(official.output)["score_parts"])
    assert parts["a government source"] == 10


def test_chart_commands_say_in_one_line_when_the_charts_extra_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # What a slim install (no matplotlib) finds: the charts extra is absent.
    monkeypatch.setattr("monitor.chart.available", lambda: False)
    for args in (
        ("signals", "chart", "1", "-o", str(tmp_path / "a.png")),
        ("quotes", "chart", "035420", "--since", "30d", "-o", str(tmp_path / "b.png")),
    ):
        result = CliRunner().invoke(main, list(args))
        assert result.exit_code == 2, result.output
        expected = "charts need the charts extra: pip install 'kmon[charts]'"
        assert result.output.strip().endswith(expected)
        assert result.output.count("\n") == 1
