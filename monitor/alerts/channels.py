"""The configured channels: one tagged union of their settings and one factory.

``type`` selects the kind (``slack``, ``email``, ``console``), so a configuration
error names the fields of the kind that was meant, not those of every kind.
"""

from __future__ import annotations

from typing import Annotated

import aiohttp
from pydantic import Field

from monitor.alerts.console import ConsoleChannel, ConsoleConfig
from monitor.alerts.email import EmailChannel, EmailConfig
from monitor.alerts.message import Channel
from monitor.alerts.slack import SlackChannel, SlackConfig

__all__ = ["ChannelConfig", "build_channel"]

ChannelConfig = Annotated[SlackConfig | EmailConfig | ConsoleConfig, Field(discriminator="type")]


def build_channel(name: str, config: ChannelConfig, http: aiohttp.ClientSession) -> Channel:
    """The channel ``name`` as configured. ``http`` is the daemon's shared session
    (used by Slack; the caller closes it)."""
    if isinstance(config, SlackConfig):
        return SlackChannel(name, config, http)
    if isinstance(config, EmailConfig):
        return EmailChannel(name, config)
    return ConsoleChannel(name, config)
