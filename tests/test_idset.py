"""IdSet against a plain dict: same repeats, same first positions, in any batching."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.io.idset import IdSet, hash_ids


@settings(deadline=None, max_examples=200)
@given(st.lists(st.sampled_from([f"id{i}" for i in range(12)] + ["", "é/..", "x" * 50]),
                max_size=80),
       st.lists(st.integers(1, 9), min_size=1, max_size=20),
       st.lists(st.booleans(), min_size=80, max_size=80))
def test_idset_matches_dict_reference(ids, cuts, active):
    ref: dict[str, int] = {}
    expected = []
    for pos, (i, a) in enumerate(zip(ids, active, strict=False)):
        if not a:
            expected.append(-1)
        elif i in ref:
            expected.append(ref[i])
        else:
            ref[i] = pos
            expected.append(-1)
    s, got, start, k = IdSet(), [], 0, 0
    while start < len(ids):
        end = min(len(ids), start + cuts[k % len(cuts)])
        batch = ids[start:end]
        first = s.add_batch(hash_ids(batch), np.arange(start, end, dtype=np.int64),
                            np.asarray(active[start:end], dtype=bool))
        got.extend(first.tolist())
        start, k = end, k + 1
    assert got == expected
    assert s.size == len(ref)
