"""The kmon command as a user runs it: a subprocess of this interpreter."""

from __future__ import annotations

import asyncio
import sys


async def kmon(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``kmon ARGS`` with ``env``; its exit status, standard output and error."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
