"""Where the third-party samples are: ``../shared`` beside the checkout.

Tests that read them skip when the folder is absent (a checkout on its own), unless
``KMON_TEST_REQUIRE_SHARED`` is set, as CI sets it: there the samples are always
present, so a missing folder (a moved test, a renamed path) must fail the run instead
of turning those tests off unnoticed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


def require(*folders: Path) -> None:
    """Skip the calling test module unless every one of ``folders`` exists."""
    missing = [str(folder) for folder in folders if not folder.is_dir()]
    if not missing:
        return
    if os.environ.get("KMON_TEST_REQUIRE_SHARED"):
        raise RuntimeError(f"shared samples missing (KMON_TEST_REQUIRE_SHARED is set): {missing}")
    pytest.skip(f"shared samples not available at {', '.join(missing)}", allow_module_level=True)
