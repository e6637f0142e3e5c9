"""Metrics for judging reward-model scores against ground truth: pure functions, numpy only.

Conventions shared by every function here:

* a score of ``None`` or NaN means "not scored": the row is left out, and counting such rows is
  the caller's job (the functions never report them, except ``processbench_eval``'s ``unscored``);
* labels are binary, 1 (or True) = correct; anything else, ``None`` included, raises
  ``ValueError``, because a missing label is a data bug that silently dropping would hide;
* every result is a plain Python ``float`` / ``int`` / ``None``, so it can go straight to JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

# The ProcessBench threshold grid: 0.01, 0.02, ..., 0.99. Rounded so that 0.07 is the float
# 0.07 (arange accumulates error), which matters because "reward < threshold" is exact.
THRESHOLD_GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)


def _scores(scores: Any) -> np.ndarray:
    # dtype=float turns None into NaN, so one isnan test covers both kinds of "not scored".
    return np.asarray(scores, dtype=float).reshape(-1)


def _labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels, dtype=float).reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"{y.shape[0]} labels for {n} scores")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0/1 (or bool); None and other values are rejected")
    return y.astype(np.int64)


def _scored(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """The (scores, labels) of the rows that have a score."""
    s = _scores(scores)
    y = _labels(labels, s.shape[0])
    keep = ~np.isnan(s)
    return s[keep], y[keep]


def auroc(scores: Sequence[float | None] | np.ndarray, labels: Any) -> float | None:
    """Area under the ROC curve (Mann–Whitney U, ties count 1/2); None with fewer than 2 classes."""
    s, y = _scored(scores, labels)
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # Average ranks: a block of tied scores occupying 1-based ranks start+1..end all get the
    # block's mean rank, which is exactly what makes a tied pos/neg pair count 1/2.
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    end = np.cumsum(counts)
    avg_rank = (end - counts + 1 + end) / 2.0
    rank_sum = float(avg_rank[inverse][y == 1].sum())
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def average_precision(scores: Sequence[float | None] | np.ndarray, labels: Any) -> float | None:
    """Average precision as sklearn defines it; None when there is no positive row."""
    s, y = _scored(scores, labels)
    if y.shape[0] == 0 or y.sum() == 0:
        return None
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # One threshold per distinct score: the last row of each tied block (ties are not ordered
    # against each other, which would make AP depend on the input order).
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.shape[0] - 1]
    tps = np.cumsum(y)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float | None],
    scores: Sequence[float | None] | np.ndarray,
    labels: Any,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``metric(scores, labels)`` over rows.

    Unscored rows are dropped before resampling, so every resample is the size of the population
    the point estimate was computed on. Resamples where the metric is None (e.g. one class) are
    skipped; None when fewer than half are valid.
    """
    s, y = _scored(scores, labels)
    n = s.shape[0]
    if n == 0 or n_boot < 1:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    values = [v for row in idx if (v := metric(s[row], y[row])) is not None]
    if len(values) * 2 < n_boot:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(np.asarray(values, dtype=float), [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


def top1(
    groups: Sequence[Hashable],
    scores: Sequence[float | None] | np.ndarray,
    labels: Any,
    pick: str = "max",
) -> dict[str, float | int | None]:
    """Best-of-n per question: top1 accuracy (ties at the top shared), oracle and random baselines.

    Only groups with at least 2 scored rows count. ``pick="min"`` selects the lowest score
    (e.g. the shortest sample when scores are lengths).
    """
    if pick not in ("max", "min"):
        raise ValueError(f"pick must be 'max' or 'min', not {pick!r}")
    s = _scores(scores)
    y = _labels(labels, s.shape[0])
    if len(groups) != s.shape[0]:
        raise ValueError(f"{len(groups)} groups for {s.shape[0]} scores")
    # Keys may be any hashable (tuples, mixed types) that numpy could not sort, so ids come from
    # a dict; everything after that is vectorised.
    ids: dict[Hashable, int] = {}
    gid = np.fromiter((ids.setdefault(g, len(ids)) for g in groups), np.int64, len(groups))
    keep = ~np.isnan(s)
    s, y, gid = s[keep], y[keep], gid[keep]
    if pick == "min":
        s = -s
    n_groups = len(ids)
    best = np.full(n_groups, -np.inf)
    np.maximum.at(best, gid, s)
    at_top = s == best[gid]
    rows = np.bincount(gid, minlength=n_groups)
    top_rows = np.bincount(gid, weights=at_top, minlength=n_groups)
    top_pos = np.bincount(gid, weights=at_top * y, minlength=n_groups)
    pos = np.bincount(gid, weights=y, minlength=n_groups)
    valid = rows >= 2
    n = int(valid.sum())
    if n == 0:
        return {"questions": 0, "top1_accuracy": None, "oracle": None, "random": None}
    return {
        "questions": n,
        # Uniform tie-breaking among the top rows: the expected label is their mean label.
        "top1_accuracy": float(np.mean(top_pos[valid] / top_rows[valid])),
        "oracle": float(np.mean(pos[valid] > 0)),
        "random": float(np.mean(pos[valid] / rows[valid])),
    }


# --- ProcessBench (Zheng et al. 2024) ---------------------------------------------------------


def predicted_first_error(step_rewards: Sequence[float | None], threshold: float) -> int | None:
    """Index of the first step with reward < threshold (equal is not an error); None if none.

    A None/NaN step reward is never below the threshold.
    """
    r = np.asarray(step_rewards, dtype=float).reshape(-1)
    below = np.flatnonzero(r < threshold)
    return int(below[0]) if below.size else None


def processbench_f1(
    predicted: Sequence[int | None], truth: Sequence[int | None]
) -> dict[str, float | int | None]:
    """ProcessBench F1: harmonic mean of accuracy on erroneous and on correct samples."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} truths")
    _check_truth(truth)
    err_hits = sum(p == t for p, t in zip(predicted, truth, strict=True) if t is not None)
    cor_hits = sum(p is None for p, t in zip(predicted, truth, strict=True) if t is None)
    n_error = sum(t is not None for t in truth)
    n_correct = len(truth) - n_error
    a = err_hits / n_error if n_error else None
    b = cor_hits / n_correct if n_correct else None
    return {
        "f1": _f1(a, b) if a is not None and b is not None else None,
        "acc_error": a,
        "acc_correct": b,
        "n_error": n_error,
        "n_correct": n_correct,
    }


def _f1(a: Any, b: Any) -> Any:
    # Same operation order for Python floats and numpy arrays, so choose_threshold's vectorised
    # F1 is bit-identical to processbench_f1's and ties resolve the same way.
    denom = a + b
    if isinstance(denom, np.ndarray):
        return np.where(denom > 0, 2 * a * b / np.where(denom > 0, denom, 1.0), 0.0)
    return 2 * a * b / denom if denom > 0 else 0.0


def first_error_truth(
    values: Sequence[Any], step_counts: Sequence[int | None] | None = None
) -> tuple[list[int | None], list[int]]:
    """Labelled first-error indices, in any of the conventions sources use, as the truth
    ``processbench_f1`` takes (None = no error), and the rows whose value is out of range.

    * ``None`` (or NaN) and ``-1`` both mean "every step is right": ProcessBench's raw files
      write -1 (their ``label`` field), converted datasets write null;
    * an integer ``0 <= v < n`` (``n`` = ``step_counts[i]``, the row's step count) is the
      0-based index of the first wrong step; an integral float (``2.0``, as pandas writes an
      integer column with gaps) counts as that integer;
    * anything else is **out of range**: below -1, at or beyond the row's step count (when
      ``step_counts`` gives it; None = unknown, only the lower bound is checked), a fraction, a
      boolean or a non-number. Such a row's truth is None and its index is listed in the second
      return value: the caller leaves it out (it is neither a correct nor an erroneous sample)
      and says so; nothing here guesses what a bad label meant.
    """
    if step_counts is not None and len(step_counts) != len(values):
        raise ValueError(f"{len(step_counts)} step counts for {len(values)} values")
    truth: list[int | None] = []
    bad: list[int] = []
    for i, v in enumerate(values):
        if isinstance(v, (float, np.floating)) and np.isnan(v):
            v = None
        if v is None or (not isinstance(v, (bool, np.bool_)) and isinstance(
                v, (int, np.integer, float, np.floating)) and v == -1):
            truth.append(None)
            continue
        n = step_counts[i] if step_counts is not None else None
        ok = (not isinstance(v, (bool, np.bool_))
              and isinstance(v, (int, np.integer, float, np.floating))
              and float(v).is_integer() and v >= 0 and (n is None or v < n))
        truth.append(int(v) if ok else None)
        if not ok:
            bad.append(i)
    return truth, bad


def _check_truth(truth: Sequence[int | None]) -> None:
    # ProcessBench's raw files say "correct" with -1; passed through unconverted it would count
    # as an error sample that no prediction can ever match, so it is refused (convert with
    # first_error_truth).
    for t in truth:
        if t is not None and t < 0:
            raise ValueError(f"truth index {t} < 0: use None for a correct solution")


def choose_threshold(
    step_rewards_list: Sequence[Sequence[float | None]],
    truth: Sequence[int | None],
    candidates: Sequence[float] | np.ndarray | None = None,
) -> float:
    """The candidate threshold with the best ProcessBench F1 (ties: the smallest).

    Every sample must have a list of step rewards (drop unscored ones first). Raises ValueError
    unless there is at least one error sample and one correct sample (F1 is undefined otherwise).
    """
    if len(step_rewards_list) != len(truth):
        raise ValueError(f"{len(step_rewards_list)} samples for {len(truth)} truths")
    _check_truth(truth)
    grid = np.unique(np.asarray(THRESHOLD_GRID if candidates is None else candidates, float))
    if grid.size == 0:
        raise ValueError("no candidate thresholds")
    # The running minimum m of a sample's rewards is non-increasing, and the first step below t
    # is the first j with m[j] < t. So a prediction of k is right exactly when
    # m[k] < t <= m[k-1] (m[-1] = +inf), and "no error" exactly when t <= m[last]. Each sample
    # thus reduces to one interval (lo, hi] of thresholds where it is predicted right.
    n = len(truth)
    lo = np.full(n, np.inf)  # (inf, hi] is empty: never right
    hi = np.full(n, np.inf)
    is_error = np.zeros(n, dtype=bool)
    for i, (rewards, t) in enumerate(zip(step_rewards_list, truth, strict=True)):
        r = np.asarray(rewards, dtype=float).reshape(-1)
        # NaN is never "below" a threshold (see predicted_first_error), as +inf is not.
        m = np.minimum.accumulate(np.where(np.isnan(r), np.inf, r)) if r.size else r
        if t is None:
            lo[i] = -np.inf
            hi[i] = m[-1] if m.size else np.inf
        else:
            is_error[i] = True
            if t < m.size:
                lo[i] = m[t]
                hi[i] = m[t - 1] if t > 0 else np.inf
    n_error = int(is_error.sum())
    n_correct = n - n_error
    if n_error == 0 or n_correct == 0:
        raise ValueError(
            f"choosing a threshold needs error and correct samples ({n_error} / {n_correct})")
    right = (grid[None, :] > lo[:, None]) & (grid[None, :] <= hi[:, None])
    a = right[is_error].sum(axis=0) / n_error
    b = right[~is_error].sum(axis=0) / n_correct
    # argmax returns the first maximum and the grid is ascending: ties go to the smallest.
    return float(grid[int(np.argmax(_f1(a, b)))])


def split_indices(
    keys: Sequence[Hashable], fraction: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, test) row indices, each key's side fixed by a seeded hash of ``str(key)``.

    A row's side never depends on row order or on which other rows exist, and equal keys (e.g.
    several samples of one question) always land on the same side.
    """
    seed_bytes = str(seed).encode()
    calib = np.fromiter(
        (
            int.from_bytes(
                hashlib.blake2b(str(k).encode(), digest_size=8, key=seed_bytes).digest(), "big"
            )
            < fraction * 2.0**64
            for k in keys
        ),
        dtype=bool,
        count=len(keys),
    )
    return np.flatnonzero(calib), np.flatnonzero(~calib)


def processbench_eval(
    step_rewards_list: Sequence[Sequence[float | None] | None],
    truth: Sequence[int | None],
    keys: Sequence[Hashable],
    fixed_threshold: float | None = None,
    fraction: float = 0.5,
    seed: int = 0,
) -> dict[str, float | int | None]:
    """ProcessBench F1 with a threshold chosen on a calibration split, or fixed on all rows.

    Returns processbench_f1's keys (on the test rows) plus ``threshold``, ``calibration_rows``,
    ``test_rows`` and ``unscored`` (samples whose step_rewards is None, left out).
    """
    if not len(step_rewards_list) == len(truth) == len(keys):
        raise ValueError("step_rewards_list, truth and keys differ in length")
    scored = [i for i, r in enumerate(step_rewards_list) if r is not None]
    unscored = len(step_rewards_list) - len(scored)
    rewards = [step_rewards_list[i] for i in scored]
    tr = [truth[i] for i in scored]
    if fixed_threshold is None:
        calib, test = split_indices([keys[i] for i in scored], fraction, seed)
        threshold = choose_threshold([rewards[i] for i in calib], [tr[i] for i in calib])
    else:
        calib, test = np.arange(0), np.arange(len(scored))
        threshold = float(fixed_threshold)
    preds = [predicted_first_error(rewards[i], threshold) for i in test]
    return {
        "threshold": threshold,
        "calibration_rows": int(calib.size),
        "test_rows": int(test.size),
        "unscored": unscored,
        **processbench_f1(preds, [tr[i] for i in test]),
    }


def histogram(
    values: Sequence[float | None] | np.ndarray,
    bins: int = 10,
    lo: float | None = None,
    hi: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(edges, counts) of the finite values; None, NaN and ±inf are ignored.

    A missing bound comes from the data; values outside [lo, hi] are not counted.
    """
    v = _scores(values)
    v = v[np.isfinite(v)]
    if lo is None:
        lo = float(v.min()) if v.size else 0.0
    if hi is None:
        hi = float(v.max()) if v.size else 1.0
    if hi < lo:
        # Only reachable when one bound is given and the data lie entirely beyond it.
        hi = lo
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    return edges, counts
