#!/usr/bin/env python
"""Build curate/select/benchmarks/*.parquet: the benchmarks `curate decontam` knows by name.

    python scripts/make_benchmarks.py              # from ../shared/data/real
    python scripts/make_benchmarks.py PATH/TO/real

Only the columns decontamination needs are kept (id, question, reference_answer), so the
package carries ~0.4 MB instead of the reference solutions. Rows keep their source order: the
item order decides which item `contaminated_by` names when a trace overlaps several. The
licenses and origins (from ../shared/data/README.md) are written beside them in README.md;
`tests/test_decontam.py` checks that every bundled file is named there with its license.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "curate" / "select" / "benchmarks"
KEEP = ["id", "question", "reference_answer"]

# name: (file in real/, source value to keep or None for all rows)
BENCHMARKS = {
    "math500": ("ref_math500.parquet", None),
    "gsm8k": ("ref_gsm8k_test.parquet", None),
    "aime24": ("ref_aime.parquet", "aime/2024"),
    "aime25": ("ref_aime.parquet", "aime/2025"),
}
EXPECTED_ROWS = {"math500": 500, "gsm8k": 1319, "aime24": 30, "aime25": 30}


def build(real: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (file, source) in BENCHMARKS.items():
        table = pq.read_table(real / file)
        if source is not None:
            table = table.filter(pc.equal(table.column("source"), source))
        table = table.select([c for c in KEEP if c in table.column_names])
        table = table.cast(pa.schema([(c, pa.string()) for c in table.column_names]))
        if table.num_rows != EXPECTED_ROWS[name]:
            raise SystemExit(f"{name}: {table.num_rows} rows, expected {EXPECTED_ROWS[name]}")
        # No statistics or dictionary pages worth having for 500 unique strings; zstd level 19
        # because the files ship in the wheel and are written once.
        pq.write_table(table, OUT / f"{name}.parquet", compression="zstd", compression_level=19,
                       write_statistics=False)
        print(f"{name}: {table.num_rows} rows, {(OUT / f'{name}.parquet').stat().st_size:,} "
              "bytes")


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "real")
