"""The default ruleset on the seed corpus (third-party text in ../shared, not in the repo).

For each document: the themes it discusses must be found, and nothing found may be
foreign to it. Expectations come from reading the documents (see corpus/README.md).
"""

from __future__ import annotations

import pytest

from monitor.rules.match import Tagging, tag
from monitor.rules.model import Ruleset, load_rules
from tests import shared

CORPUS = shared.SHARED / "corpus"

shared.require(CORPUS)

POLICY = {
    "sovereign-ai",
    "ai-basic-act",
    "ai-investment",
    "gpu-compute",
    "ai-datacenter",
    "ai-committee",
    "ai-appointment",
    "foundation-model",
    "ai-talent",
    "china-ai",
    "platform-regulation",
}

# file: (themes it must show, themes it may show besides, entities it must name)
EXPECTED = {
    # Ha Jung-woo interview: sovereign AI, basic law vs. lower-level laws, the EU AI Act,
    # the national AI committee, talent leaving the country.
    "000_3cc261a40d3cd545.txt": (
        {"sovereign-ai", "ai-basic-act", "ai-committee", "ai-talent"},
        {"ai-investment"},
        {"naver", "ha-jung-woo"},
    ),
    # The first AI strategy roundtable of the science ministry with the platform and
    # telecom CEOs; hyperscale AI; state computing infrastructure.
    "001_d9c4fa1b89cb0f43.txt": (
        {"ai-committee", "foundation-model", "gpu-compute"},
        {"ai-talent"},
        {"msit", "naver", "kakao", "sk-telecom", "kt", "lg-uplus", "samsung-electronics"},
    ),
    # June 2025: sovereign AI op-ed, Ha appointed AI secretary, the 100 trillion won
    # pledge, GPUs, the Ulsan data centre, the AI Basic Act, STEM talent and brain
    # drain, and the Naver/Kakao rally with target prices, foreign buying, 52-week highs.
    "002_734356bdbb5b8b6b.txt": (
        {
            "sovereign-ai",
            "ai-appointment",
            "appointment",
            "ai-investment",
            "gpu-compute",
            "ai-datacenter",
            "ai-basic-act",
            "ai-talent",
            "target-price",
            "foreign-buying",
            "new-high",
        },
        {"foundation-model", "china-ai"},
        {"ha-jung-woo", "lee-jae-myung", "naver", "kakao", "sk-inc"},
    ),
    # Sovereign AI strategy debate: foundation models, NPUs, data centres, AX.
    "003_b58aec320b597296.txt": (
        {"sovereign-ai", "foundation-model", "gpu-compute", "ai-datacenter"},
        {"ai-investment", "china-ai", "ai-talent", "ai-basic-act"},
        {"lg-corp"},
    ),
    # National Assembly debate after DeepSeek: data and cloud infrastructure, 18,000
    # GPUs, the "world's best LLM", the basic AI law, platform regulation.
    "004_b11e3eeaf8b6f914.txt": (
        {
            "china-ai",
            "gpu-compute",
            "ai-datacenter",
            "foundation-model",
            "ai-basic-act",
            "platform-regulation",
        },
        {"ai-talent", "sovereign-ai"},
        {"msit", "startup-alliance", "kisa", "national-assembly"},
    ),
}


@pytest.fixture(scope="module")
def ruleset() -> Ruleset:
    return load_rules(None)


def tag_file(name: str, ruleset: Ruleset) -> Tagging:
    title, _, body = (CORPUS / name).read_text(encoding="utf-8").partition("\n")
    return tag(title, body, ruleset)


def test_every_seed_document_is_covered() -> None:
    assert sorted(p.name for p in CORPUS.glob("0*.txt")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_seed_document_themes_and_entities(ruleset: Ruleset, name: str) -> None:
    required, allowed, entities = EXPECTED[name]
    tagging = tag_file(name, ruleset)
    # AI itself (anchored), AI as a market word and price-move words are in every
    # article of the corpus; the table is about the policy themes.
    found = set(tagging.themes) - {"ai-general", "ai-word", "price-move"}
    assert required <= found, f"missing {sorted(required - found)}"
    assert found <= required | allowed, f"unexpected {sorted(found - required - allowed)}"
    assert entities <= set(tagging.entities)
    # Every document is AI policy; the ones that name a platform company (or Ha) are
    # policy news about the AI platform sector.
    fired = {f.rule_id for f in tagging.news_rules_fired}
    assert "ai-policy" in fired
    names_platform = bool({"naver", "kakao", "ha-jung-woo"} & set(tagging.entities))
    assert ("ai-policy-platform" in fired) == names_platform
    assert found & POLICY


def test_the_june_2025_items_flag_the_appointment_and_the_rally(ruleset: Ruleset) -> None:
    tagging = tag_file("002_734356bdbb5b8b6b.txt", ruleset)
    fired = {f.rule_id for f in tagging.news_rules_fired}
    assert {"ai-appointment", "ai-policy-platform", "ai-platform-market"} <= fired
    assert {"035420", "035720"} <= tagging.tickers
    assert "ai-platform" in tagging.sectors
