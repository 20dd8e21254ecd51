"""The validated ruleset kept on disk between starts, keyed by what it is made of.

Reading the default rules and a user's file and validating them takes about a tenth
of a second, on every ``kmon poll``. The result depends only on the bytes of those
files and on the code that reads them, so a start that finds a ruleset made from the
same bytes by the same code unpickles it instead (about a millisecond).

The key is a SHA-256 over the rules files (path and bytes), the source of the
modules that read them (``monitor/rules/model.py``, ``monitor/yamlfile.py``,
``monitor/severity.py``) and the versions of Python and pydantic. Only a ruleset
that loaded without error is stored; a rules file with an error is read and reported
as before. The cache is a plain directory of this user's
(``$CACHE_DIRECTORY`` under systemd, else ``$XDG_CACHE_HOME/kmon`` or
``~/.cache/kmon``); when it cannot be read or written the rules load as before, and
``KMON_RULES_CACHE=off`` leaves it alone.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from importlib import resources
from pathlib import Path

import pydantic
import structlog

from monitor import severity, yamlfile
from monitor.rules import model
from monitor.rules.model import Ruleset, load_rules

log = structlog.get_logger("kmon.rules")

CACHE_ENV = "KMON_RULES_CACHE"


def cache_dir() -> Path | None:
    """Where rulesets are kept, or None when the cache is off."""
    if os.environ.get(CACHE_ENV, "").lower() in ("off", "0", "false", "no"):
        return None
    # systemd's CacheDirectory= sets $CACHE_DIRECTORY (several paths, colon-separated).
    if systemd := os.environ.get("CACHE_DIRECTORY"):
        return Path(systemd.split(":")[0])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kmon"


def ruleset_key(path: Path | None) -> str:
    """The hash of everything the ruleset of ``path`` is made of."""
    digest = hashlib.sha256()
    for part in (sys.version, pydantic.VERSION):
        digest.update(part.encode() + b"\0")
    # The code that reads and validates the files, and whose classes are pickled.
    for module in (model, yamlfile, severity):
        digest.update(Path(module.__file__ or "").read_bytes())
    default = resources.files("monitor.rules").joinpath(model.DEFAULT_RULES)
    digest.update(default.read_bytes())
    if path is not None:
        digest.update(str(path.resolve()).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cached_rules(path: Path | None, directory: Path | None = None) -> Ruleset:
    """:func:`load_rules` of ``path``, from the cache when it holds the same ruleset.

    Raises what :func:`load_rules` raises; a missing user file is left to it too.
    """
    directory = directory if directory is not None else cache_dir()
    if directory is None:
        return load_rules(path)
    try:
        key = ruleset_key(path)
    except OSError:  # an unreadable rules file: load_rules says what is wrong
        return load_rules(path)
    stored = directory / f"ruleset-{key}.pickle"
    try:
        with open(stored, "rb") as f:
            ruleset = pickle.load(f)
        if isinstance(ruleset, Ruleset):
            return ruleset
    except FileNotFoundError:
        pass
    except Exception as exc:  # a damaged or foreign file: made anew below
        log.debug("rules_cache_unreadable", path=str(stored), error=str(exc))
    ruleset = load_rules(path)
    _store(directory, stored, ruleset)
    return ruleset


def _store(directory: Path, stored: Path, ruleset: Ruleset) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for old in directory.glob("ruleset-*.pickle"):
            old.unlink(missing_ok=True)  # one ruleset is kept: the one in use
        # Written whole, then renamed: another process never reads half a file.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ruleset-")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(ruleset, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, stored)
    except OSError as exc:
        log.debug("rules_cache_not_written", path=str(directory), error=str(exc))
