"""Rebuild sample_data/ from ../shared/data (run once by a maintainer; the output is committed).

Only Apache-2.0 sources are copied, so one license text covers the folder. Rows are taken as
they are: a deterministic slice of each file, spread over subsets.
"""

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "sample_data"


def take_per_source(table: pa.Table, per_source: int) -> pa.Table:
    parts = []
    for src in sorted(set(table.column("source").to_pylist())):
        sub = table.filter(pc.equal(table.column("source"), src))
        parts.append(sub.slice(0, per_source))
    return pa.concat_tables(parts)


def main() -> int:
    if not SHARED.is_dir():
        print(f"{SHARED} not found", file=sys.stderr)
        return 2
    OUT.mkdir(exist_ok=True)
    real = SHARED / "real"
    # Canonical Parquet: labelled math steps, long QwQ thinking traces, BIG-Bench mistakes.
    pb = take_per_source(pq.read_table(real / "processbench.parquet"), 25)
    qwq = pq.read_table(real / "prmbench_qwq.parquet").slice(0, 40)
    bb = take_per_source(pq.read_table(real / "bigbench_mistake.parquet"), 8)
    pq.write_table(pb, OUT / "processbench.parquet", compression="zstd")
    pq.write_table(qwq, OUT / "prmbench_qwq.parquet", compression="zstd")
    pq.write_table(bb, OUT / "bigbench_mistake.parquet", compression="zstd")
    raw = SHARED / "raw"
    # Other shapes, as the sources publish them: tags (JSON list), steps (JSON list), r1 (JSONL).
    marco = json.loads((raw / "marco_o1_CoT_demo.json").read_text())[:40]
    (OUT / "marco_o1_cot_demo.json").write_text(json.dumps(marco, indent=1, ensure_ascii=False))
    steps = json.loads((raw / "processbench_gsm8k.json").read_text())[400 - 40:]
    (OUT / "processbench_gsm8k_steps.json").write_text(
        json.dumps(steps, indent=1, ensure_ascii=False))
    lines = (raw / "llamafactory_reason_tool_use_demo_50.jsonl").read_text().splitlines()[:20]
    (OUT / "llamafactory_reason_tool_use.jsonl").write_text("\n".join(lines) + "\n")
    for f in sorted(OUT.iterdir()):
        print(f.name, f.stat().st_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
