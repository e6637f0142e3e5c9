"""Segmentation: properties (hypothesis) and comparisons with plain, obviously-correct code."""

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.steps import (
    SEP,
    SegmentOptions,
    align_to_response,
    cap_steps,
    count_steps_array,
    merge_short,
    segment_trace,
    split_steps,
    split_steps_array,
)

settings.register_profile("ci", deadline=None, max_examples=300)
settings.load_profile("ci")

# Texts built from the characters that matter: newlines, spaces, odd unicode whitespace,
# letters and LaTeX-ish symbols.
chars = st.sampled_from(list("ab \n\n\n\t\r\\$x{}") + ["\u00a0", "\u2028", "\x1c", "\u3000", "é"])
texts = st.lists(chars, max_size=60).map("".join)
paragraphs = st.lists(st.text(st.characters(blacklist_categories=("Cs",)), min_size=0,
                              max_size=30), max_size=12)
step_lists = st.lists(st.text(min_size=1, max_size=20).filter(lambda s: not s.isspace()),
                      min_size=0, max_size=15)


def reference_split(text: str) -> list[str]:
    """Obviously correct: split on SEP, then glue whitespace-only pieces to a neighbour."""
    if not text.strip():
        return []
    pieces = text.split(SEP)
    # indices of pieces with content
    real = [i for i, p in enumerate(pieces) if p.strip()]
    out = []
    for k, i in enumerate(real):
        start = 0 if k == 0 else i  # leading blanks go with the first real piece
        end = real[k + 1] if k + 1 < len(real) else len(pieces)  # trailing blanks go with it
        out.append(SEP.join(pieces[start:end]))
    return out


@given(texts)
def test_split_round_trips_and_has_no_blank_steps(text):
    steps = split_steps(text)
    if text.strip():
        assert SEP.join(steps) == text
        assert all(s.strip() for s in steps)
    else:
        assert steps == []


@given(texts)
def test_split_matches_reference(text):
    assert split_steps(text) == reference_split(text)


@given(paragraphs)
def test_split_of_clean_paragraphs_gives_them_back(paras):
    paras = [p for p in paras if p.strip() and SEP not in p and not p.startswith("\n")
             and not p.endswith("\n")]
    text = SEP.join(paras)
    assert split_steps(text) == paras


def test_split_examples():
    assert split_steps("a\n\nb") == ["a", "b"]
    assert split_steps("a\n\n\n\nb") == ["a\n\n", "b"]  # the empty piece folds into "a"
    assert split_steps("a\n\n\nb") == ["a", "\nb"]  # ReasonFlux's text.split("\n\n") here
    assert split_steps("\n\na\n\n") == ["\n\na\n\n"]
    assert split_steps("a\nb") == ["a\nb"]
    assert split_steps("") == [] and split_steps(None) == [] and split_steps(" \n\n ") == []


@given(step_lists, st.integers(0, 30))
def test_merge_short_keeps_text_and_respects_minimum(steps, min_chars):
    merged = merge_short(steps, min_chars)
    assert SEP.join(merged) == SEP.join(steps)
    assert len(merged) <= len(steps)
    if len(merged) > 1:
        # every step but possibly the last-merged one reaches the minimum
        assert all(len(s.strip()) >= min_chars for s in merged[:-1])


@given(step_lists, st.integers(1, 10))
def test_cap_steps_bounds_count_and_keeps_text(steps, max_steps):
    capped = cap_steps(steps, max_steps)
    assert SEP.join(capped) == SEP.join(steps)
    assert len(capped) == min(len(steps), max_steps)


@given(step_lists, st.integers(0, 20))
def test_align_counts(thinking, n_response):
    aligned = align_to_response(thinking, n_response)
    assert SEP.join(aligned) == SEP.join(thinking)
    if n_response >= 1 and len(thinking) > n_response:
        assert len(aligned) == n_response
        assert aligned[: n_response - 1] == thinking[: n_response - 1]
    else:
        assert aligned == thinking


@given(texts, texts, st.integers(0, 15), st.one_of(st.none(), st.integers(1, 6)), st.booleans())
def test_segment_trace_never_loses_text(traj, resp, min_chars, max_steps, align):
    opts = SegmentOptions(min_step_chars=min_chars, max_steps=max_steps, align=align)
    t, r = segment_trace(traj, resp, opts=opts)
    assert SEP.join(t) == (traj if traj.strip() else "")
    assert SEP.join(r) == (resp if resp.strip() else "")
    if max_steps:
        assert len(r) <= max_steps
    if align and r:
        assert len(t) <= len(r)


def test_source_steps_are_used_as_given():
    t, r = segment_trace("ignored\n\ntext", "x", trajectory_steps=["one", "two", "three"],
                         response_steps=["only"])
    assert t == ["one", "two", "three"] and r == ["only"]
    # alignment merges surplus thinking steps into the last kept one
    t, r = segment_trace("", "", ["a", "b", "c"], ["x", "y"], SegmentOptions(align=True))
    assert t == ["a", "b\n\nc"] and r == ["x", "y"]


def test_options_are_validated():
    with pytest.raises(ValueError):
        SegmentOptions(max_steps=0)
    with pytest.raises(ValueError):
        SegmentOptions(min_step_chars=-1)


@given(st.lists(st.one_of(st.none(), texts), max_size=20))
def test_vectorised_forms_match_python(values):
    arr = pa.array(values, pa.string())
    assert count_steps_array(arr).to_pylist() == [len(split_steps(v)) for v in values]
    assert split_steps_array(arr).to_pylist() == [split_steps(v) for v in values]


@given(st.lists(st.one_of(st.none(), texts), max_size=20), st.integers(0, 5))
def test_vectorised_forms_match_python_on_sliced_and_chunked_arrays(values, cut):
    # offsets of a sliced array do not start at 0; chunked arrays come from Parquet reads
    arr = pa.array(["x"] * cut + values, pa.string()).slice(cut)
    assert count_steps_array(arr).to_pylist() == [len(split_steps(v)) for v in values]
    chunked = pa.chunked_array([arr.slice(0, len(values) // 2), arr.slice(len(values) // 2)],
                               pa.string())
    assert count_steps_array(chunked).to_pylist() == [len(split_steps(v)) for v in values]
    large = pa.array(values, pa.large_string())
    assert split_steps_array(large).to_pylist() == [split_steps(v) for v in values]
