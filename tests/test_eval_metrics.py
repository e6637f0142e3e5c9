"""Evaluation metrics: hand-computed examples, and properties against slow or sklearn references."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from curate.evaluation.metrics import (
    THRESHOLD_GRID,
    auroc,
    average_precision,
    bootstrap_ci,
    choose_threshold,
    first_error_truth,
    histogram,
    predicted_first_error,
    processbench_eval,
    processbench_f1,
    split_indices,
    top1,
)

# Few distinct values, so that random lists are full of ties.
TIE_VALUES = [0.0, 0.25, 0.5, 0.75, 1.0]
tied_scores = st.integers(0, len(TIE_VALUES) - 1).map(lambda i: TIE_VALUES[i])
rows = st.lists(st.tuples(tied_scores, st.integers(0, 1)), min_size=1, max_size=40)


def slow_auroc(scores, labels):
    """O(n^2) reference: share of (pos, neg) pairs ordered right, ties 1/2."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


# --- AUROC / AP: hand examples ----------------------------------------------------------------


def test_auroc_and_ap_hand_example():
    # pos = {0.35, 0.8}, neg = {0.1, 0.4}: pairs 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1, 0.8>0.4 yes
    # -> 3/4. AP, descending 0.8(+) 0.4(-) 0.35(+) 0.1(-): precision at each recall step is
    # 1/1 (recall 0 -> .5) and 2/3 (recall .5 -> 1) -> .5*1 + .5*2/3 = 0.8333...
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert auroc(scores, labels) == pytest.approx(0.75)
    assert average_precision(scores, labels) == pytest.approx(5 / 6)


def test_ties_count_half_and_are_grouped_for_ap():
    # pos = {0.5, 0.9}, neg = {0.5, 0.2}: 0.5=0.5 counts 1/2, the other three pairs are won
    # -> 3.5/4 = 0.875. AP: 0.9(+) gives P=1 at R=.5; the tied 0.5 block (+,-) is ONE threshold
    # with P=2/3 at R=1 -> .5*1 + .5*2/3 = 5/6 (ordering the tie + first would give 1.0).
    scores, labels = [0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]
    assert auroc(scores, labels) == pytest.approx(0.875)
    assert average_precision(scores, labels) == pytest.approx(5 / 6)
    assert average_precision([0.5, 0.5, 0.2, 0.9], [0, 1, 0, 1]) == pytest.approx(5 / 6)


def test_all_tied_is_chance():
    assert auroc([0.3] * 4, [1, 0, 1, 0]) == pytest.approx(0.5)
    # One threshold holding everything: recall 0 -> 1 at precision 2/4.
    assert average_precision([0.3] * 4, [1, 0, 1, 0]) == pytest.approx(0.5)


def test_unscored_rows_are_excluded():
    scores, labels = [0.1, None, 0.4, math.nan, 0.35, 0.8], [0, 1, 0, 0, 1, 1]
    assert auroc(scores, labels) == pytest.approx(0.75)
    assert average_precision(scores, labels) == pytest.approx(5 / 6)
    assert auroc(np.array([0.1, np.nan, 0.9]), np.array([False, True, True])) == 1.0


def test_one_class_or_empty_is_none():
    assert auroc([0.1, 0.2], [1, 1]) is None
    assert auroc([0.1, 0.2], [0, 0]) is None
    assert auroc([], []) is None
    # The only negative is unscored, so one class remains.
    assert auroc([0.1, None], [1, 0]) is None
    assert average_precision([0.1, 0.2], [0, 0]) is None
    assert average_precision([], []) is None
    # All positive: every threshold has precision 1.
    assert average_precision([0.1, 0.2], [1, 1]) == 1.0


def test_bad_labels_are_rejected():
    with pytest.raises(ValueError):
        auroc([0.1, 0.2], [1, None])
    with pytest.raises(ValueError):
        auroc([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError):
        average_precision([0.1, 0.2], [1])


# --- AUROC / AP: properties -------------------------------------------------------------------


@given(rows)
def test_auroc_matches_pairwise_reference(data):
    scores, labels = zip(*data, strict=True)
    expected = slow_auroc(scores, labels)
    got = auroc(list(scores), list(labels))
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-12)


@given(rows)
def test_auroc_and_ap_match_sklearn(data):
    metrics = pytest.importorskip("sklearn.metrics")
    scores, labels = zip(*data, strict=True)
    assume(1 in labels)
    assert average_precision(scores, labels) == pytest.approx(
        metrics.average_precision_score(labels, scores), abs=1e-12)
    if 0 in labels:
        assert auroc(scores, labels) == pytest.approx(
            metrics.roc_auc_score(labels, scores), abs=1e-12)


@given(rows, st.randoms(use_true_random=False))
def test_auroc_and_ap_ignore_row_order(data, rnd):
    shuffled = list(data)
    rnd.shuffle(shuffled)
    for f in (auroc, average_precision):
        a = f(*zip(*data, strict=True))
        b = f(*zip(*shuffled, strict=True))
        assert (a is None and b is None) or a == pytest.approx(b, abs=1e-12)


def test_auroc_is_fast_on_large_input():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200_000)
    s = y + rng.normal(size=y.size)
    assert 0.7 < auroc(s, y) < 0.8


# --- bootstrap --------------------------------------------------------------------------------


def clear_example():
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(60, int), np.zeros(60, int)]
    return y + rng.normal(0, 0.7, y.size), y


def test_bootstrap_is_deterministic_and_contains_estimate():
    s, y = clear_example()
    ci = bootstrap_ci(auroc, s, y, n_boot=300, seed=3)
    assert ci == bootstrap_ci(auroc, s, y, n_boot=300, seed=3)
    assert ci != bootstrap_ci(auroc, s, y, n_boot=300, seed=4)
    lo, hi = ci
    assert isinstance(lo, float) and isinstance(hi, float)
    assert lo < auroc(s, y) < hi
    assert 0.5 < lo and hi <= 1.0
    wider = bootstrap_ci(auroc, s, y, n_boot=300, seed=3, level=0.99)
    assert wider[0] <= lo and hi <= wider[1]


def test_bootstrap_drops_unscored_rows_before_resampling():
    s, y = clear_example()
    with_gaps = np.r_[s, [np.nan, np.nan]]
    assert bootstrap_ci(auroc, with_gaps, np.r_[y, [1, 0]], n_boot=200) == bootstrap_ci(
        auroc, s, y, n_boot=200)


def test_bootstrap_none_when_too_few_valid_resamples():
    assert bootstrap_ci(auroc, [0.1, 0.2, 0.3], [1, 1, 1]) is None
    assert bootstrap_ci(auroc, [], []) is None
    # s[0] is a uniformly drawn row: valid in ~1/3 of resamples -> None; in ~2/3 -> an interval.
    assert bootstrap_ci(lambda s, y: 1.0 if s[0] < 1 else None, [0, 1, 2], [0, 1, 0]) is None
    assert bootstrap_ci(lambda s, y: 1.0 if s[0] < 2 else None, [0, 1, 2], [0, 1, 0]) == (1.0, 1.0)


# --- top1 -------------------------------------------------------------------------------------


def test_top1_hand_example():
    groups = ["q1", "q1", "q1", "q2", "q2", "q3", "q3", "q4", "q4"]
    scores = [0.9, 0.9, 0.1, 0.2, 0.7, 0.5, None, 0.3, 0.4]
    labels = [1, 0, 1, 0, 1, 1, 0, 0, 0]
    # q3 has one scored row: excluded. q1: tie at 0.9 between labels 1 and 0 -> 0.5; q2: 0.7 -> 1;
    # q4: 0.4 -> 0. top1 = (0.5 + 1 + 0)/3 = 0.5; oracle = (1 + 1 + 0)/3;
    # random = (2/3 + 1/2 + 0)/3 = 7/18.
    got = top1(groups, scores, labels)
    assert got["questions"] == 3
    assert got["top1_accuracy"] == pytest.approx(0.5)
    assert got["oracle"] == pytest.approx(2 / 3)
    assert got["random"] == pytest.approx(7 / 18)
    # pick="min": q1 0.1 -> 1, q2 0.2 -> 0, q4 0.3 -> 0 -> 1/3; baselines unchanged.
    low = top1(groups, scores, labels, pick="min")
    assert low["top1_accuracy"] == pytest.approx(1 / 3)
    assert low["oracle"] == got["oracle"] and low["random"] == got["random"]


def test_top1_no_groups():
    empty = {"questions": 0, "top1_accuracy": None, "oracle": None, "random": None}
    assert top1([], [], []) == empty
    assert top1(["a", "b", "b"], [0.1, 0.2, None], [1, 0, 1]) == empty
    with pytest.raises(ValueError):
        top1(["a"], [0.1], [1], pick="median")


def slow_top1(groups, scores, labels, pick):
    by = {}
    for g, s, y in zip(groups, scores, labels, strict=True):
        if s is not None:
            by.setdefault(g, []).append((s, y))
    by = {g: v for g, v in by.items() if len(v) >= 2}
    if not by:
        return None
    best = {g: (max if pick == "max" else min)(s for s, _ in v) for g, v in by.items()}
    top = [np.mean([y for s, y in v if s == best[g]]) for g, v in by.items()]
    return (len(by), np.mean(top), np.mean([any(y for _, y in v) for v in by.values()]),
            np.mean([np.mean([y for _, y in v]) for v in by.values()]))


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", ("b", 1), 3, None]), st.one_of(st.none(), tied_scores),
                  st.integers(0, 1)),
        max_size=30),
    st.sampled_from(["max", "min"]),
)
def test_top1_matches_reference(data, pick):
    groups, scores, labels = (list(c) for c in zip(*data, strict=True)) if data else ([], [], [])
    expected = slow_top1(groups, scores, labels, pick)
    got = top1(groups, scores, labels, pick=pick)
    if expected is None:
        assert got["questions"] == 0
    else:
        n, t, o, r = expected
        assert got["questions"] == n
        assert got["top1_accuracy"] == pytest.approx(t)
        assert got["oracle"] == pytest.approx(o)
        assert got["random"] == pytest.approx(r)


# --- ProcessBench -----------------------------------------------------------------------------


def test_predicted_first_error_boundary():
    assert predicted_first_error([0.7, 0.5, 0.2], 0.5) == 2  # 0.5 == threshold: not an error
    assert predicted_first_error([0.7, 0.5, 0.2], 0.51) == 1
    assert predicted_first_error([0.7, 0.5, 0.2], 0.2) is None
    assert predicted_first_error([0.1, 0.9], 0.5) == 0
    assert predicted_first_error([], 0.5) is None
    assert predicted_first_error([None, math.nan, 0.3], 0.5) == 2


def test_processbench_f1_hand_example():
    # Error samples: truth 1 predicted 1 (right), truth 3 predicted 2 (wrong) -> acc_error 1/2.
    # Correct samples: both predicted None -> acc_correct 1. f1 = 2*.5*1/(.5+1) = 2/3.
    got = processbench_f1([1, 2, None, None], [1, 3, None, None])
    assert got == {"f1": pytest.approx(2 / 3), "acc_error": 0.5, "acc_correct": 1.0,
                   "n_error": 2, "n_correct": 2}
    # An error sample predicted None and a correct sample flagged: both parts 0 -> f1 0.
    assert processbench_f1([None, 0], [2, None])["f1"] == 0.0


def test_processbench_f1_missing_part_and_bad_truth():
    got = processbench_f1([1, 0], [1, 2])
    assert got["acc_error"] == 0.5 and got["acc_correct"] is None and got["f1"] is None
    assert processbench_f1([], [])["f1"] is None
    with pytest.raises(ValueError):
        processbench_f1([None], [-1])  # ProcessBench's raw "-1 = correct" must be converted


def test_first_error_truth_hand_example():
    # ProcessBench raw: -1 = every step right; null the same; 3 steps → 0..2 are steps.
    truth, bad = first_error_truth([-1, None, 0, 2, 3, -2, 1.0, 1.5, float("nan"), True],
                                   [3] * 10)
    assert truth == [None, None, 0, 2, None, None, 1, None, None, None]
    assert bad == [4, 5, 7, 9]
    assert first_error_truth([7, -1], None) == ([7, None], [])  # step count unknown
    assert first_error_truth([7], [None]) == ([7], [])
    # converted, processbench_f1 takes it (it refuses a raw -1)
    assert processbench_f1([None, 0], first_error_truth([-1, 0])[0])["f1"] == 1.0


@given(st.lists(st.tuples(st.integers(1, 6), st.one_of(st.none(), st.integers(-8, 8))),
                max_size=30))
def test_first_error_truth_convention(rows):
    counts = [n for n, _ in rows]
    values = [v for _, v in rows]
    truth, bad = first_error_truth(values, counts)
    for i, (n, v) in enumerate(rows):
        if v is None or v == -1:
            assert truth[i] is None and i not in bad
        elif 0 <= v < n:
            assert truth[i] == v and i not in bad
        else:
            assert truth[i] is None and i in bad
    # -1 and null are interchangeable, and floats that are integers read as those integers
    assert first_error_truth([None if v == -1 else v for v in values], counts) == (truth, bad)
    assert first_error_truth([None if v is None else float(v) for v in values], counts) == \
        (truth, bad)
    assert bad == sorted(bad)
    processbench_f1([None] * len(truth), truth)  # a truth list processbench_f1 accepts


def brute_force_threshold(rewards, truth, grid):
    best_t, best_f1 = None, -1.0
    for t in grid:
        f1 = processbench_f1([predicted_first_error(r, t) for r in rewards], truth)["f1"]
        if f1 > best_f1:  # strict: ties keep the smaller threshold
            best_t, best_f1 = float(t), f1
    return best_t


# Rewards on a 0.05 grid, which the threshold grid contains: reward == threshold happens often.
grid_rewards = st.integers(0, 20).map(lambda i: round(i * 0.05, 2))
pb_sample = st.lists(grid_rewards, max_size=6).flatmap(
    lambda r: st.tuples(st.just(r), st.one_of(st.none(), st.integers(0, len(r) + 1))))


@settings(max_examples=60, deadline=None)
@given(st.lists(pb_sample, min_size=2, max_size=12))
def test_choose_threshold_matches_brute_force(samples):
    rewards, truth = (list(c) for c in zip(*samples, strict=True))
    assume(any(t is None for t in truth) and any(t is not None for t in truth))
    assert choose_threshold(rewards, truth) == brute_force_threshold(rewards, truth,
                                                                     THRESHOLD_GRID)
    # Custom candidates, unsorted and duplicated.
    cands = [0.6, 0.05, 0.3, 0.05, 0.95]
    assert choose_threshold(rewards, truth, cands) == brute_force_threshold(
        rewards, truth, sorted(set(cands)))


def test_choose_threshold_ties_go_to_smallest_and_needs_both_parts():
    # Error at step 1 is found for any t in (0.2, 0.8]; the correct sample (min 0.9) is right for
    # any t <= 0.9. F1 = 1 on (0.2, 0.8] -> smallest grid point 0.21.
    assert choose_threshold([[0.9, 0.2], [0.95, 0.9]], [1, None]) == 0.21
    with pytest.raises(ValueError):
        choose_threshold([[0.9, 0.2]], [1])


def test_choose_threshold_is_fast():
    import time

    rng = np.random.default_rng(0)
    rewards = [rng.random(rng.integers(1, 30)).tolist() for _ in range(3400)]
    truth = [None if rng.random() < 0.4 else int(rng.integers(0, len(r))) for r in rewards]
    start = time.perf_counter()
    choose_threshold(rewards, truth)
    # Well under a second in practice (~0.06 s); the bound only catches a per-threshold loop.
    assert time.perf_counter() - start < 1.0


@given(st.lists(st.text(max_size=5) | st.integers(), unique=True, max_size=40),
       st.randoms(use_true_random=False), st.integers(0, 3))
def test_split_is_independent_of_row_order(keys, rnd, seed):
    calib, test = split_indices(keys, seed=seed)
    assert sorted(np.r_[calib, test].tolist()) == list(range(len(keys)))
    side = {keys[i]: "c" for i in calib} | {keys[i]: "t" for i in test}
    perm = list(keys)
    rnd.shuffle(perm)
    calib2, test2 = split_indices(perm, seed=seed)
    assert {perm[i]: "c" for i in calib2} | {perm[i]: "t" for i in test2} == side
    # Dropping rows changes no other row's side.
    sub = keys[::2]
    c3, t3 = split_indices(sub, seed=seed)
    assert all(side[sub[i]] == "c" for i in c3) and all(side[sub[i]] == "t" for i in t3)


def test_split_fraction_seed_and_equal_keys():
    keys = [f"q{i}" for i in range(4000)]
    calib, test = split_indices(keys, fraction=0.3)
    assert abs(calib.size / 4000 - 0.3) < 0.03
    assert not np.array_equal(calib, split_indices(keys, fraction=0.3, seed=1)[0])
    assert split_indices(keys, fraction=0.0)[0].size == 0
    assert split_indices(keys, fraction=1.0)[1].size == 0
    # Samples of one question stay together.
    calib, _ = split_indices(["a", "b", "a", "b", "a"])
    assert set(calib.tolist()) in ({0, 2, 4}, {1, 3}, set(), {0, 1, 2, 3, 4})


def pb_dataset(n=400, seed=0):
    rng = random.Random(seed)
    rewards, truth = [], []
    for _ in range(n):
        k = rng.randint(2, 8)
        err = rng.choice([None, rng.randrange(k)])
        r = [rng.uniform(0.55, 1.0) for _ in range(k)]
        if err is not None:
            r[err] = rng.uniform(0.0, 0.45)
        rewards.append(r)
        truth.append(err)
    return rewards, truth


def test_processbench_eval_with_calibration_split():
    rewards, truth = pb_dataset()
    rewards[5] = None
    rewards[9] = None
    keys = [f"id{i}" for i in range(len(truth))]
    got = processbench_eval(rewards, truth, keys)
    assert got["unscored"] == 2
    assert got["calibration_rows"] + got["test_rows"] == len(truth) - 2
    scored = [i for i, r in enumerate(rewards) if r is not None]
    calib, test = split_indices([keys[i] for i in scored])
    assert got["threshold"] == choose_threshold([rewards[scored[i]] for i in calib],
                                                [truth[scored[i]] for i in calib])
    # Perfectly separable (errors below 0.45, everything else above 0.55): the smallest perfect
    # threshold is the first grid point above the largest error reward, just under 0.45.
    assert 0.4 < got["threshold"] <= 0.45
    assert got["f1"] == 1.0 and got["n_error"] + got["n_correct"] == got["test_rows"]


def test_processbench_eval_with_fixed_threshold_uses_all_rows():
    rewards, truth = pb_dataset(50)
    rewards[0] = None
    got = processbench_eval(rewards, truth, list(range(50)), fixed_threshold=0.9)
    preds = [predicted_first_error(r, 0.9) for r in rewards[1:]]
    assert got == {"threshold": 0.9, "calibration_rows": 0, "test_rows": 49, "unscored": 1,
                   **processbench_f1(preds, truth[1:])}


# --- histogram --------------------------------------------------------------------------------


def test_histogram_ignores_missing():
    edges, counts = histogram([0.0, 0.1, None, math.nan, 0.95, 1.0, math.inf], bins=2)
    assert edges.tolist() == [0.0, 0.5, 1.0]
    assert counts.tolist() == [2, 2]
    edges, counts = histogram([0.2, 0.7, 1.5], bins=4, lo=0.0, hi=1.0)
    assert counts.tolist() == [1, 0, 1, 0]  # 1.5 is out of range
    edges, counts = histogram([None], bins=3)
    assert counts.sum() == 0 and edges.size == 4
