"""The deployment files say what kmon does: the systemd unit, the image, compose.

No service manager or container engine runs in the tests: the unit is checked with
``systemd-analyze verify`` where it is installed, and the container files are read and
held to the contract the daemon keeps (migrations first, health check, non-root).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from monitor.config import load_settings

REPO = Path(__file__).resolve().parents[1]
SYSTEMD = REPO / "deploy" / "systemd"
CONTAINER = REPO / "deploy" / "container"


# --- systemd ---------------------------------------------------------------------------


def unit_directives(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` → every value given, in order (keys may repeat in a unit)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def kmon_script() -> Path:
    return Path(sys.executable).parent / "kmon"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_the_unit_passes_systemd_analyze_verify() -> None:
    done = subprocess.run(
        ["bash", str(SYSTEMD / "verify"), str(kmon_script())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_unit_migrates_first_and_speaks_notify() -> None:
    unit = unit_directives(SYSTEMD / "kmon.service")
    (start,) = unit["Service.ExecStart"]
    (pre,) = unit["Service.ExecStartPre"]
    kmon, *args = shlex.split(start)
    assert args == ["run"]
    assert shlex.split(pre) == [kmon, "db", "upgrade"]
    assert unit["Service.Type"] == ["notify"]
    assert unit["Service.WatchdogSec"] and unit["Service.Restart"] == ["on-failure"]
    # kmon keeps its SQLite database in $STATE_DIRECTORY.
    assert unit["Service.StateDirectory"] == ["kmon"]
    assert unit["Service.CapabilityBoundingSet"] == [""]


def test_the_example_environment_file_is_valid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    example = (SYSTEMD / "kmon.env.example").read_text(encoding="utf-8")
    assignments = re.findall(r"^#?(KMON_[A-Z_]+)=(.*)$", example, flags=re.MULTILINE)
    names = {name for name, _ in assignments}
    assert {"KMON_DATABASE__URL", "KMON_CONFIG", "KMON_HEALTH__PORT"} <= names
    config = tmp_path / "kmon.yaml"
    config.write_text("{}\n", encoding="utf-8")
    for name, value in assignments:
        monkeypatch.setenv(name, str(config) if name == "KMON_CONFIG" else value)
    settings = load_settings()  # every example value, uncommented, is accepted
    assert settings.database.url.get_secret_value().startswith("postgresql+asyncpg://kmon:")


# --- container -------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def dockerfile_stages(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, ``FROM ${ARG}`` resolved to the argument's default."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    stages: list[Stage] = []
    defaults: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "ARG" and not stages:
            name, _, default = args.partition("=")
            defaults[name] = default
        elif keyword == "FROM":
            base, _, name = args.partition(" AS ")
            base = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], base)
            stages.append(Stage(base=base, name=name or None))
        else:
            stages[-1].instructions.append((keyword, args))
    return stages


def docker_ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out: the last matching pattern wins.

    A simplified model of Docker's rules, enough for an allowlist of top-level names.
    """
    parts = path.split("/")
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/").removeprefix("**/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes) or any(
            fnmatch.fnmatchcase(part, pattern) for part in parts
        ):
            ignored = not negate
    return ignored


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def test_the_image_is_multi_stage_non_root_and_checks_health() -> None:
    builder, final = dockerfile_stages(CONTAINER / "Dockerfile")
    assert builder.base == final.base == "python:3.11-slim"
    # The driver and the charts by default (EXTRAS; --build-arg EXTRAS=postgres is slimmer).
    assert builder.all("ARG") == ["EXTRAS=postgres,charts"]
    assert any('".[${EXTRAS}]"' in run for run in builder.all("RUN"))
    # The final stage takes the virtualenv from the builder and nothing else.
    assert final.all("COPY") == [f"--from={builder.name} /opt/kmon /opt/kmon"]
    assert not any(re.search(r"apt-get|gcc|build-essential", r) for r in final.all("RUN"))
    (user,) = final.all("USER")
    assert user.split(":")[0] not in ("root", "0")
    (health,) = final.all("HEALTHCHECK")
    assert json.loads(health.split("CMD ", 1)[1])[:2] == ["kmon", "health"]
    assert final.all("ENTRYPOINT") == ['["kmon"]'] and final.all("CMD") == ['["run"]']
    env = " ".join(final.all("ENV"))
    assert "KMON_HEALTH__HOST=0.0.0.0" in env and "PATH=/opt/kmon/bin:$PATH" in env


def test_the_base_image_is_a_build_argument_and_wheels_install_offline() -> None:
    builder, final = dockerfile_stages(CONTAINER / "Dockerfile")
    text = (CONTAINER / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM \$\{BASE\} AS builder$", text, flags=re.MULTILINE)
    assert re.search(r"^FROM \$\{BASE\}$", text, flags=re.MULTILINE)
    assert "deploy/container/wheels /wheels" in builder.all("COPY")
    (install,) = builder.all("RUN")[1:]
    assert "--no-index --find-links /wheels" in install
    # The wheelhouse stays in the builder: the final stage copies only the virtualenv.
    assert not any("wheels" in args for args in final.all("COPY"))


@pytest.mark.parametrize(
    "args",
    [
        ("build", "--tag"),
        ("build", "--wheels", ""),
        ("build", "extra"),
        ("wheelhouse",),
        ("wheelhouse", "a", "b"),
        ("wheelhouse", "--bogus"),
        ("smoke",),
        ("smoke", "a", "b"),
        ("smoke", "--absent"),
        ("base", "--mirror"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, tuple) else a,
)
def test_the_container_scripts_refuse_bad_usage_in_one_line(args: tuple[str, ...]) -> None:
    script, *rest = args
    done = subprocess.run(
        ["bash", str(CONTAINER / script), *rest],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(f"usage: deploy/container/{script}")


def test_the_build_context_holds_what_the_image_copies() -> None:
    (builder, _) = dockerfile_stages(CONTAINER / "Dockerfile")
    patterns = dockerignore()
    copied = [src for args in builder.all("COPY") for src in args.split()[:-1]]
    assert copied, "the builder copies the package sources"
    for src in copied:
        assert (REPO / src).exists(), src
        assert not docker_ignored(src, patterns), f"{src} is left out by .dockerignore"
    for local in (
        ".venv",
        ".git",
        "kmon.yaml",
        ".env",
        "kmon.db",
        "deploy/container/.env",
        "deploy/container/build",
        "tests",
    ):
        assert docker_ignored(local, patterns), f"{local} would be sent to the build"
    # The wheels of an offline build reach the builder stage.
    assert not docker_ignored("deploy/container/wheels/lxml-6.1-cp311.whl", patterns)
    assert docker_ignored("monitor/__pycache__/cli.cpython-311.pyc", patterns)
    assert not docker_ignored("monitor/cli/main.py", patterns)


def test_compose_migrates_before_the_daemon_starts() -> None:
    compose = yaml.safe_load((CONTAINER / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    postgres, migrate, daemon = services["postgres"], services["migrate"], services["kmon"]

    assert "pg_isready" in postgres["healthcheck"]["test"]
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]

    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert daemon["command"] == ["run"]
    assert daemon["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    # Both run the one image, built with the repository root as the context (whose
    # .dockerignore is the one that applies).
    for service in (migrate, daemon):
        build = service["build"]
        assert (CONTAINER / build["context"]).resolve() == REPO
        assert (REPO / build["dockerfile"]).resolve() == CONTAINER / "Dockerfile"
        assert service["image"] == migrate["image"]


def test_compose_gives_kmon_a_database_url_it_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compose = yaml.safe_load((CONTAINER / "compose.yaml").read_text(encoding="utf-8"))
    daemon, postgres = compose["services"]["kmon"], compose["services"]["postgres"]
    url = re.sub(
        r"\$\{KMON_DB_PASSWORD:\?[^}]*\}", "s3cret", daemon["environment"]["KMON_DATABASE__URL"]
    )
    monkeypatch.setenv("KMON_DATABASE__URL", url)
    settings = load_settings(search=False)
    assert settings.masked()["database"]["url"] == (
        f"postgresql+asyncpg://{postgres['environment']['POSTGRES_USER']}:***@postgres:5432/"
        f"{postgres['environment']['POSTGRES_DB']}"
    )
    # The same password variable feeds PostgreSQL.
    assert "${KMON_DB_PASSWORD:?" in postgres["environment"]["POSTGRES_PASSWORD"]


# --- Prometheus ------------------------------------------------------------------------

PROMETHEUS = REPO / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)"
)


@needs_promtool
@pytest.mark.parametrize(
    "args",
    [("check", "rules", "kmon-rules.yml"), ("test", "rules", "kmon-rules.test.yml")],
    ids=["check", "unit-tests"],
)
def test_the_alerting_rules_pass_promtool(args: tuple[str, ...]) -> None:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alerting_rules_name_only_metrics_kmon_exports() -> None:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from monitor.service.metrics import AlertMetrics, Metrics

    metrics = Metrics(channels=["desk"])
    AlertMetrics(metrics.registry, channels=["desk"])
    families = list(text_string_to_metric_families(generate_latest(metrics.registry).decode()))
    # Families without samples yet (read from the database at a scrape) count by name.
    exported = {sample.name for family in families for sample in family.samples}
    exported |= {family.name for family in families}
    exported |= {f"{family.name}_total" for family in families if family.type == "counter"}
    rules = yaml.safe_load((PROMETHEUS / "kmon-rules.yml").read_text(encoding="utf-8"))
    named = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\bkmon_[a-z_]+", rule["expr"])
    }
    assert named and named <= exported, named - exported
