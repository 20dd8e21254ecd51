"""``kmon config``: the effective configuration, and a check of a file."""

from __future__ import annotations

from pathlib import Path

import click

from monitor.cli.common import State, fail, to_json


@click.group()
def config() -> None:
    """Show or check configuration."""


@config.command("show")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml")
@click.pass_obj
def config_show(state: State, fmt: str) -> None:
    """Print the effective configuration, secrets masked."""
    import yaml

    data = state.settings.masked()
    if fmt == "json":
        click.echo(to_json(data))
    else:
        click.echo(yaml.safe_dump(data, allow_unicode=True, sort_keys=False).rstrip())


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def config_check(file: Path) -> None:
    """Validate FILE (with the environment applied); exit 2 if it is not valid."""
    if not file.is_file():
        fail(f"config error: {file}: no such file", code=2)
    from monitor.config import ConfigError, load_settings

    try:
        settings = load_settings(file, search=False)
    except ConfigError as exc:
        fail(f"config error: {exc}", code=2)
    rules = ""
    if settings.rules.enabled:
        from monitor.rules import RulesError
        from monitor.rules.model import load_rules

        try:
            ruleset = load_rules(settings.rules.file)
        except RulesError as exc:
            fail(f"rules error: {exc}", code=2)
        rules = f", {len(ruleset.rules)} rules"
    click.echo(f"{file}: ok ({len(settings.sources)} sources{rules})")
