"""Summary statistics of a numeric column, exact, with non-finite values counted apart.

NaN and ±inf in a score mean "no score" (a failed or degenerate computation), so they are
counted as missing, like nulls, and never enter a minimum, median or mean.
"""

from __future__ import annotations

import numpy as np


def as_floats(values) -> np.ndarray:
    """``values`` (a list with None, an Arrow or numpy array) as float64, None as NaN."""
    if isinstance(values, (list, tuple)):
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        import pyarrow as pa
        import pyarrow.compute as pc

        values = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64)


def finite(values) -> np.ndarray:
    """The finite values of ``values``."""
    a = as_floats(values)
    return a[np.isfinite(a)]


def distribution(values) -> dict:
    """count, missing (null, NaN, ±inf), min, median, mean, max over every value (exact)."""
    a = as_floats(values)
    ok = a[np.isfinite(a)]
    out = {"count": int(ok.size), "missing": int(a.size - ok.size)}
    if ok.size:
        out.update(min=_r(ok.min()), median=_r(np.median(ok)), mean=_r(ok.mean()),
                   max=_r(ok.max()))
    else:
        out.update(min=None, median=None, mean=None, max=None)
    return out


def _r(x) -> float:
    return round(float(x), 4)
