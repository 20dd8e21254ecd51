"""``kmon``: run the daemon and ask it what it stored.

Exit status: 0 success; 1 a runtime failure (database unreachable or behind);
2 a usage or configuration error (bad option, bad filter, bad config file).

One module per command group; this one only puts them together.
"""

from __future__ import annotations

import gc
from pathlib import Path

import click

from monitor.cli import (
    alerts,
    config,
    daemon,
    db,
    disclosures,
    items,
    market,
    quotes,
    replicas,
    rules,
    sources,
)
from monitor.cli.common import KmonGroup, State, fail


@click.group(cls=KmonGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML config file (default: $KMON_CONFIG, else ./kmon.yaml, else built-in).",
)
@click.version_option(package_name="kmon")
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """kmon watches Korean AI-policy news and stores it for analysts."""
    # Start-up (the imports a command makes, the settings) allocates many objects and
    # frees none: without the cyclic collector it takes a quarter less time. The work
    # itself, in run_async, runs with the collector back on.
    if gc.isenabled():
        gc.disable()
        ctx.call_on_close(gc.enable)
    if config is not None and not config.is_file():
        fail(f"config error: {config}: no such file", code=2)
    ctx.obj = State(config)


for command in (
    daemon.run,
    daemon.health,
    daemon.poll,
    config.config,
    db.db,
    sources.sources,
    items.items,
    disclosures.disclosures,
    market.market_group,
    quotes.tickers,
    quotes.quotes,
    rules.rules,
    rules.signals,
    alerts.alerts,
    replicas.replicas,
):
    main.add_command(command)
