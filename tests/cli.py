"""Run the real ``alpolicy`` command in a subprocess (what a user's shell does)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass


@dataclass
class Result:
    code: int
    out: str
    err: str


def alpolicy(*args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 120) -> Result:
    full_env = dict(os.environ)
    full_env.update(env or {})
    process = subprocess.run(
        [sys.executable, "-m", "alpolicy", *args],
        capture_output=True, text=True, env=full_env, input=input, timeout=timeout,
    )
    return Result(process.returncode, process.stdout, process.stderr)
