from pathlib import Path

import pytest

from monitor.config import ConfigError, Settings, find_config_file, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kmon.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_gives_working_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    url = settings.database.url.get_secret_value()
    assert url == f"sqlite+aiosqlite:///{tmp_path / 'state' / 'kmon' / 'kmon.db'}"
    names = {s.name for s in settings.sources}
    assert {"yonhap-news", "koreaherald", "hankyung-economy", "gnews-sovereign-ai"} <= names
    assert all(s.interval >= 60 for s in settings.sources)


def test_systemd_state_directory_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/kmon")
    assert Settings().database.url.get_secret_value() == "sqlite+aiosqlite:////var/lib/kmon/kmon.db"


def test_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        """
database:
  url: sqlite+aiosqlite:///from-file.db
http:
  per_host_limit: 2
sources:
  - name: local
    url: http://127.0.0.1:8080/rss
    interval: 5s
""",
    )
    monkeypatch.setenv("KMON_HTTP__PER_HOST_LIMIT", "7")
    settings = load_settings(path)
    assert settings.database.url.get_secret_value() == "sqlite+aiosqlite:///from-file.db"
    assert settings.http.per_host_limit == 7  # the environment outranks the file
    assert [(s.name, s.interval) for s in settings.sources] == [("local", 5.0)]


def test_config_file_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config_file(None, {}) is None
    write(tmp_path, "{}")
    assert find_config_file(None, {}) == Path("kmon.yaml")
    assert find_config_file(None, {"KMON_CONFIG": "/etc/kmon.yaml"}) == Path("/etc/kmon.yaml")
    assert find_config_file(Path("x.yaml"), {"KMON_CONFIG": "/etc/kmon.yaml"}) == Path("x.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "sources:\n  - name: a\n    url: ftp://x/feed\n",
            r"kmon.yaml:3: sources\[0\].url: must be an http:// or https:// URL",
        ),
        (
            "sources:\n  - name: a\n    url: https://news.example/rss\n    interval: 10\n",
            r"kmon.yaml:2: sources\[0\]: interval 10s is below the 60s floor",
        ),
        (
            "sources:\n  - name: a\n    url: https://e.kr/a\n  - name: a\n    url: https://e.kr/b\n",
            r"kmon.yaml:1: sources: source name 'a' is used twice",
        ),
        (
            "sources:\n  - name: a\n    url: https://e.kr/a\n    interval: soon\n",
            r"kmon.yaml:4: sources\[0\].interval: not a duration: 'soon'",
        ),
        (
            "http:\n  per_host_limit: 0\n",
            r"kmon.yaml:2: http.per_host_limit: Input should be greater",
        ),
        ("htttp:\n  x: 1\n", r"kmon.yaml:1: htttp: Extra inputs are not permitted"),
        (
            "database:\n  url: mysql://x/y\n",
            r"kmon.yaml:2: database.url: unsupported database scheme",
        ),
        ("sources: [\n", r"kmon.yaml:2: invalid YAML"),
        ("- just\n- a list\n", r"kmon.yaml:1: the top level must be a mapping"),
        ("log_level: LOUD\n", r"kmon.yaml:1: log_level: Input should be"),
    ],
)
def test_bad_config_names_file_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path)
    assert "\n" not in str(info.value)


def test_bad_environment_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMON_HTTP__TOTAL_TIMEOUT", "forever")
    with pytest.raises(
        ConfigError, match=r"^environment KMON_HTTP__TOTAL_TIMEOUT: http.total_timeout"
    ):
        load_settings(write(tmp_path, "{}"))


def test_secrets_are_masked(tmp_path: Path) -> None:
    path = write(tmp_path, "database:\n  url: postgresql+asyncpg://kmon:hunter2@db/kmon\n")
    shown = load_settings(path).masked()
    assert shown["database"]["url"] == "postgresql+asyncpg://kmon:***@db/kmon"
    assert "hunter2" not in repr(shown)
    assert "hunter2" not in repr(load_settings(path))


def test_the_example_config_is_valid_and_states_the_defaults() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "kmon.example.yaml"
    settings = load_settings(example, search=False)
    defaults = Settings()
    assert settings.http == defaults.http
    assert settings.scheduler == defaults.scheduler
    assert settings.health == defaults.health
    assert settings.quotes == defaults.quotes
    assert settings.rules == defaults.rules
    assert settings.alerts == defaults.alerts
    assert (settings.log_format, settings.log_level) == (defaults.log_format, defaults.log_level)
    assert settings.database.pool_size == defaults.database.pool_size
    by_name = {s.name: s for s in defaults.sources}
    for source in settings.sources:
        assert source == by_name[source.name]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "quotes:\n  interval: 5s\n",
            r"kmon.yaml:2: quotes.interval: interval 5s is below the 15s",
        ),
        (
            "quotes:\n  providers: [naver, bloomberg]\n",
            r"kmon.yaml:2: quotes.providers\[1\]: Input",
        ),
        (
            "quotes:\n  tickers:\n    - {code: '035420', name_ko: a, name_en: b}\n"
            "    - {code: '035420', name_ko: a, name_en: b}\n",
            r"kmon.yaml:2: quotes.tickers: ticker '035420' is listed twice",
        ),
        (
            "quotes:\n  tickers:\n    - {code: 'naver', name_ko: a, name_en: b}\n",
            r"kmon.yaml:3: quotes.tickers\[0\].code: String should match pattern",
        ),
        (
            "sources:\n  - name: quotes-x\n    url: https://e.kr/rss\n",
            r"kmon.yaml:2: sources\[0\].name: names starting with 'quotes-' are kept",
        ),
    ],
)
def test_bad_quote_settings_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))


DART = "sources:\n  - {name: dart, kind: dart, url: https://opendart.fss.or.kr/api, interval: 5m"


def test_a_dart_source_takes_its_key_from_the_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, DART + ", api_key: from-file}\n")
    [source] = load_settings(path).sources
    assert source.api_key is not None and source.api_key.get_secret_value() == "from-file"
    monkeypatch.setenv("KMON_DART_API_KEY", "from-env")
    settings = load_settings(path)
    [source] = settings.sources
    assert source.api_key is not None and source.api_key.get_secret_value() == "from-env"
    assert "from-env" not in repr(settings.masked()) + repr(settings)
    # Tickers default to the stocks followed for quotes.
    assert settings.dart_sources()["dart"].tickers == ["035420", "035720"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (DART + "}\n", r"kmon.yaml:1: sources: source 'dart' of kind dart needs api_key"),
        (
            DART + ", api_key: k, daily_budget: 50000}\n",
            r"sources\[0\].daily_budget: Input should be less than or equal to 20000",
        ),
        (DART + ", api_key: k, types: [Z]}\n", r"sources\[0\].types\[0\]: Input should be"),
        (DART + ", api_key: k, tickers: [NAVER]}\n", r"sources\[0\].tickers\[0\]: String should"),
        (
            "sources:\n  - {name: a, url: https://e.kr/rss, api_key: k}\n",
            r"sources\[0\]: api_key: only for sources of kind dart",
        ),
    ],
)
def test_bad_dart_sources_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))
