#!/usr/bin/env python
"""Build curate/signals/negative_steps.json: the fixed pool of negative steps for coherence.

The coherence signal asks how much more a step resembles its true successor than steps from
unrelated traces. Those unrelated steps come from this fixed, seeded pool — never from the
batch being scored — so a trace's coherence does not depend on batching, chunking, resuming or
on what else is in the dataset. The pool mixes competition-maths solution steps (ProcessBench)
with long-thinking steps (PRMBench QwQ traces, Marco-o1 thoughts), all Apache-2.0.

    python scripts/make_negative_pool.py ../shared/data/real
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pyarrow.parquet as pq

SOURCES = [  # file, step column, how many, license, origin
    ("processbench.parquet", "response_steps", 160, "Apache-2.0", "QwenLM/ProcessBench @ ee5ae00f"),
    ("prmbench_qwq.parquet", "steps", 48, "Apache-2.0", "ssmisya/PRMBench @ a1ae4eab"),
    ("marco_o1_cot_demo.parquet", "trajectory_steps", 48, "Apache-2.0",
     "AIDC-AI/Marco-o1 @ 4f99998d"),
]


def main(folder: str) -> None:
    rng = random.Random(20261127)
    steps, origin = [], []
    for name, col, k, lic, where in SOURCES:
        rows = pq.read_table(Path(folder) / name, columns=[col]).column(col).to_pylist()
        pool = sorted({s.strip() for r in rows for s in (r or []) if 40 <= len(s.strip()) <= 600})
        steps += rng.sample(pool, k)
        origin.append({"file": name, "steps": k, "license": lic, "origin": where})
    out = Path(__file__).resolve().parents[1] / "curate" / "signals" / "negative_steps.json"
    out.write_text(json.dumps({"about": "Negative steps for the coherence signal (see "
                               "curate/signals/trajectory.py); taken unchanged from the "
                               "sources below, selected with a fixed seed.",
                               "sources": origin, "steps": steps}, ensure_ascii=False,
                              indent=0) + "\n")
    print(f"{len(steps)} steps -> {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/real")
