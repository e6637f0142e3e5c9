"""Benchmarks that time each variant in a child process of its own.

Linux keeps a process's peak RSS across fork and exec, so a variant timed in the parent (or in
a child of a parent that built the data) would report someone else's peak. A child prints one
tagged JSON line with its figures; the parent parses it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

RESULT_TAG = "@@result "


def emit(figures: dict) -> None:
    """In the child: print the figures, with this process's peak RSS (KiB on Linux)."""
    figures = {**figures, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    print(RESULT_TAG + json.dumps(figures))


def run_child(script: str, variant: str, inp: Path, out: Path, threads: int) -> dict:
    """Run ``script _run VARIANT INP OUT`` with its thread pools pinned; OUT is removed after."""
    env = dict(os.environ, POLARS_MAX_THREADS=str(threads), RAYON_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    try:
        p = subprocess.run([sys.executable, script, "_run", variant, str(inp), str(out)],
                           capture_output=True, text=True, env=env, check=False)
        if p.returncode != 0:
            raise SystemExit(f"{variant} failed:\n{p.stderr}")
        line = next(x for x in p.stdout.splitlines() if x.startswith(RESULT_TAG))
        return json.loads(line[len(RESULT_TAG):])
    finally:
        shutil.rmtree(out, ignore_errors=True)
