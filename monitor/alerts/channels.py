"""The configured channels built: one factory over the kinds of
:data:`monitor.alerting.ChannelConfig`."""

from __future__ import annotations

import aiohttp

from monitor.alerting import ChannelConfig, EmailConfig, SlackConfig
from monitor.alerts.console import ConsoleChannel
from monitor.alerts.email import EmailChannel
from monitor.alerts.message import Channel
from monitor.alerts.slack import SlackChannel

__all__ = ["build_channel"]


def build_channel(name: str, config: ChannelConfig, http: aiohttp.ClientSession) -> Channel:
    """The channel ``name`` as configured. ``http`` is the daemon's shared session
    (used by Slack; the caller closes it)."""
    if isinstance(config, SlackConfig):
        return SlackChannel(name, config, http)
    if isinstance(config, EmailConfig):
        return EmailChannel(name, config)
    return ConsoleChannel(name, config)
