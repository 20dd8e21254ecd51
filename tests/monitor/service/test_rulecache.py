"""The ruleset kept between starts: the same as loading, and never a stale one."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from monitor.rules import RulesError
from monitor.rules.match import tag
from monitor.rules.model import Ruleset, load_rules
from monitor.service.rulecache import CACHE_ENV, cache_dir, cached_rules, ruleset_key

HEADLINE = "정부, 소버린 AI 전략 발표… 네이버·카카오 GPU 확보 지원"


def fired(ruleset: Ruleset) -> list[str]:
    return [r.rule_id for r in tag(HEADLINE, "", ruleset).news_rules_fired]


def a_rule_to_disable(tmp_path: Path) -> str:
    """A default rule that a user may disable alone (no joined rule uses it)."""
    probe = tmp_path / "probe.yaml"
    for rule in load_rules().rules:
        probe.write_text(f"version: 1\ndisabled: [{rule}]\n", encoding="utf-8")
        try:
            load_rules(probe)
        except RulesError:
            continue
        return rule
    raise AssertionError("every default rule is used by another")


def test_a_cached_ruleset_is_the_loaded_one(tmp_path: Path) -> None:
    first = cached_rules(None, tmp_path)
    again = cached_rules(None, tmp_path)
    loaded = load_rules()
    assert [p.name for p in tmp_path.iterdir()] == [f"ruleset-{ruleset_key(None)}.pickle"]
    for ruleset in (first, again):
        assert list(ruleset.rules) == list(loaded.rules)
        assert list(ruleset.entities) == list(loaded.entities)
        assert ruleset.scoring == loaded.scoring
        assert fired(ruleset) == fired(loaded) != []


def test_a_start_reads_the_stored_ruleset(tmp_path: Path) -> None:
    cached_rules(None, tmp_path)
    [stored] = tmp_path.iterdir()
    # A ruleset that no file describes, stored under the key: what comes back is it.
    marked = dataclasses.replace(load_rules(), rules={})

    stored.write_bytes(pickle.dumps(marked))
    assert cached_rules(None, tmp_path).rules == {}


def test_a_changed_rules_file_is_read_anew(tmp_path: Path) -> None:
    rule = a_rule_to_disable(tmp_path)
    user = tmp_path / "rules.yaml"
    user.write_text("version: 1\n", encoding="utf-8")
    cache = tmp_path / "cache"
    assert rule in cached_rules(user, cache).rules
    user.write_text(f"version: 1\ndisabled: [{rule}]\n", encoding="utf-8")
    assert rule not in cached_rules(user, cache).rules
    assert len(list(cache.iterdir())) == 1  # the one in use only


def test_a_rules_file_with_an_error_is_reported_and_not_stored(tmp_path: Path) -> None:
    user = tmp_path / "rules.yaml"
    user.write_text("version: 1\ndisabled: [no-such-rule]\n", encoding="utf-8")
    cache = tmp_path / "cache"
    with pytest.raises(RulesError, match="no-such-rule"):
        cached_rules(user, cache)
    assert not cache.exists() or not list(cache.iterdir())


def test_a_damaged_cache_file_is_made_anew(tmp_path: Path) -> None:
    cached_rules(None, tmp_path)
    [stored] = tmp_path.iterdir()
    stored.write_bytes(b"not a pickle")
    assert fired(cached_rules(None, tmp_path)) == fired(load_rules())
    assert stored.read_bytes() != b"not a pickle"


def test_an_unwritable_cache_leaves_the_rules_as_they_load(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("", encoding="utf-8")
    assert fired(cached_rules(None, blocked / "kmon")) == fired(load_rules())


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({CACHE_ENV: "off"}, None),
        ({"CACHE_DIRECTORY": "/var/cache/kmon:/var/cache/other"}, Path("/var/cache/kmon")),
        ({"XDG_CACHE_HOME": "/x/cache"}, Path("/x/cache/kmon")),
    ],
)
def test_where_the_cache_is(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: Path | None
) -> None:
    for name in (CACHE_ENV, "CACHE_DIRECTORY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cache_dir() == expected
