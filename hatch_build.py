"""Build hook: compiles the matcher's C scanner (monitor/rules/_scan.c) into the wheel.

The scanner is optional. Where no C compiler or Python headers are found, the wheel is
built without it, one warning says so, and kmon runs the same rules in Python
(monitor/rules/match.py; the daemon's ``daemon_started`` line and its ``kmon_build``
metric say which, ``matcher=native`` or ``matcher=python``).
``KMON_BUILD_NATIVE=off`` leaves it out on purpose, ``KMON_BUILD_NATIVE=require`` fails
the build instead of falling back. setuptools is used for its compiler machinery only
(flags, include paths and the extension's file name as this Python wants them).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

EXTENSION = "monitor.rules._scan"
SOURCE = "monitor/rules/_scan.c"


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        mode = os.environ.get("KMON_BUILD_NATIVE", "auto").lower()
        if mode in ("off", "0", "no", "false"):
            return
        editable = version == "editable"
        try:
            built = self._compile(inplace=editable)
        except Exception as exc:  # a missing compiler or header, whatever distutils raises
            if mode == "require":
                raise
            self.app.display_warning(
                f"kmon: the matcher's C scanner was not built ({type(exc).__name__}: {exc}); "
                "the rules run in Python"
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if not editable:
            build_data["force_include"][str(built)] = f"monitor/rules/{built.name}"

    def _compile(self, *, inplace: bool) -> Path:
        from setuptools import Distribution, Extension
        from setuptools.command.build_ext import build_ext

        root = Path(self.root)
        previous = Path.cwd()
        os.chdir(root)
        try:
            dist = Distribution({"name": "kmon", "ext_modules": [Extension(EXTENSION, [SOURCE])]})
            command = build_ext(dist)
            command.inplace = inplace
            if not inplace:
                scratch = tempfile.mkdtemp(prefix="kmon-build-")
                command.build_lib = os.path.join(scratch, "lib")
                command.build_temp = os.path.join(scratch, "temp")
            command.ensure_finalized()
            command.run()
            return root / command.get_ext_fullpath(EXTENSION)
        finally:
            os.chdir(previous)
