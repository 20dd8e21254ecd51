"""Declarative rules: what makes a news item or a quote move policy-relevant.

``model`` reads and validates rules files (the shipped ``default.yaml`` merged with a
user's file); ``match`` finds terms in Korean and English text and evaluates news rules.
"""

from __future__ import annotations


class RulesError(Exception):
    """A rules file cannot be used; ``str()`` is one line naming the file, line and field."""
