"""`kmon rules check` and `kmon rules test`: no database needed."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from monitor.cli.main import main


def kmon(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_check_the_default_rules() -> None:
    result = kmon("rules", "check")
    assert result.exit_code == 0
    assert result.output.startswith("default rules: ok (")
    assert "7 news, 1 move, 2 joined, 1 source_health" in result.output


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
    assert f"{good}: ok (" in result.output and "7 news" in result.output

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
