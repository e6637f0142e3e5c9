"""MinHash LSH machinery for near-duplicate detection, in numpy arrays (no object per row).

Shingles
    Computed on ``normalize_text`` output (NFKC, casefold, one space between words; numbers
    untouched). ``word``: n consecutive words (split on the single spaces normalisation
    leaves); ``char``: n consecutive characters (code points, spaces included). A text with
    fewer than n units has one shingle, the whole text; an empty text has none (it is never a
    near duplicate; identical empty texts are caught by the exact pass). Shingles are hashed
    in numpy, never materialised as strings: a word is a polynomial hash of its code points,
    an n-gram a mix of its units' hashes. The hash is ours (fixed constants, splitmix64
    finalizer), so it is the same on every machine and library version.

Signatures
    rensa's R-MinHash over the 64-bit shingle hashes (``digest_matrix_from_flat_token_hashes``:
    one flat buffer and row offsets per batch, no Python object per shingle), chosen over
    datasketch by measurement on the same 5,000 synthetic traces (bench/select_bench.py,
    bench/RESULTS.md): 45-56k signatures/s against datasketch's 0.85-1.0k
    (``MinHash.update_batch``, which multiplies every shingle by every permutation in numpy),
    16-23k rows/s with our shingle hashing included; and an estimate at least as close to the
    exact Jaccard (RMSE 0.024 vs 0.029 on ~1,000 planted pairs; 0.029 is the ideal for 128
    slots). R-MinHash fills slots by
    fast similarity sketching, not one permutation a slot, so its slots are not independent;
    the share of bands of r = 8 slots that collide was checked against mean J^8 (0.203 vs
    0.194 for pairs at J in [0.75, 0.85), 0.447 vs 0.445 in [0.85, 0.95)), so the banding
    formula below holds.

Banding
    ``lsh_params``: among bands × rows ≤ num_perm, those where a pair at true Jaccard
    ``s_hi = threshold + 0.05`` (capped at halfway to 1 for thresholds above 0.9) becomes a
    candidate with probability P(s) = 1 − (1 − s^r)^b ≥ 0.98, the one with the fewest false
    candidates, measured as the area ∫₀^threshold P(s) ds (ties: fewer bands). Each band's r
    signature values are mixed into one uint64 bucket key; a row's b keys are all that is kept
    of its signature (8·b bytes a row).

Candidates
    Per band, rows are sorted by bucket key (stable, over rows already in rank order), and
    within each bucket every member is paired with the bucket's best-ranked member (a star)
    and with the next ``window`` members (all pairs in buckets of up to window + 1 rows). Big
    buckets thus give O(size) pairs, not O(size²).

Verification
    Every candidate pair is checked by its exact Jaccard on the shingle sets, held as sorted
    unique 32-bit hashes per row (a 32-bit collision between two traces' sets is ~n²/2³²
    ≈ 10⁻³ spurious shared shingles for 3,000-shingle texts: far below one shingle's weight).
"""

from __future__ import annotations

import array
import itertools
import math
from dataclasses import dataclass

import numpy as np

U64 = np.uint64
_M1 = U64(0xBF58476D1CE4E5B9)
_M2 = U64(0x94D049BB133111EB)
_GOLD = U64(0x9E3779B97F4A7C15)
_P = U64(0x100000001B3)  # FNV prime: odd, so the polynomial keeps every code point's bits
_S30, _S27, _S31, _S32 = U64(30), U64(27), U64(31), U64(32)
SPACE = 32
SHINGLES = ("word", "char")
TARGET = 0.98     # collision probability required at s_hi
MARGIN = 0.05     # s_hi = threshold + MARGIN


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise on uint64 (wrapping arithmetic); a new array."""
    x = np.array(x, dtype=U64)
    t = np.empty_like(x)
    with np.errstate(over="ignore"):  # in place: half the memory traffic of x = x ^ ...
        for shift, mult in ((_S30, _M1), (_S27, _M2)):
            np.right_shift(x, shift, out=t)
            x ^= t
            x *= mult
        np.right_shift(x, _S31, out=t)
        x ^= t
    return x


def _codes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Code points of the texts joined by one space, and each text's start in them."""
    codes = np.frombuffer(" ".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    lens = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    starts = np.zeros(len(texts), dtype=np.int64)
    np.cumsum(lens[:-1] + 1, out=starts[1:])
    return codes, starts


_POW = np.ones(1, dtype=U64)
_INV = np.ones(1, dtype=U64)
_P_INV = U64(pow(int(_P), -1, 1 << 64))
CHUNK = 1 << 17  # code points hashed at once: 1 MiB arrays stay in cache (measured 2x faster
#                  than 32 MiB ones)


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P**k and P**-k mod 2**64 for k < n at least (grown on demand and kept)."""
    global _POW, _INV
    if len(_POW) < n:
        size = 1 << max(6, (n - 1).bit_length())
        with np.errstate(over="ignore"):
            _POW = np.cumprod(np.full(size, _P, dtype=U64)) * _P_INV
            _INV = np.cumprod(np.full(size, _P_INV, dtype=U64)) * _P
    return _POW, _INV


def _word_hashes(codes: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hash of every non-empty word, and the text it belongs to (words in text order).

    A word's hash is its polynomial Σ (c_k + 1)·P^k over its code points, taken from prefix
    sums of (c_i + 1)·P^i over the whole buffer: (pre[end] − pre[start])·P^−start (P is odd,
    so it has an inverse mod 2⁶⁴). Three passes over the buffer instead of one per word."""
    n = len(codes)
    if n == 0:
        return np.zeros(0, U64), np.zeros(0, np.int64)
    seps = np.flatnonzero(codes == SPACE)
    w_start = np.concatenate([[0], seps + 1])
    w_end = np.concatenate([seps, [n]])
    keep = w_end > w_start
    w_start, w_end = w_start[keep], w_end[keep]
    pw, inv = _powers(n + 1)
    pre = np.zeros(n + 1, dtype=U64)
    with np.errstate(over="ignore"):
        c = np.add(codes, 1, dtype=U64)
        c *= pw[:n]
        np.cumsum(c, out=pre[1:])
        poly = (pre[w_end] - pre[w_start]) * inv[w_start]
        h = mix64(poly + (w_end - w_start).astype(U64) * _GOLD)
    per_text = np.diff(np.searchsorted(w_start, starts), append=len(w_start))
    return h, np.repeat(np.arange(len(starts)), per_text)


def _ngrams(units: np.ndarray, text_of: np.ndarray, n_texts: int, n: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every run of ``n`` consecutive units of one text (units: uint64 hashes in
    text order, ``text_of`` their text), and the count per text. A text with 1..n-1 units
    gets one shingle made of all of them."""
    counts_units = np.bincount(text_of, minlength=n_texts) if len(units) else \
        np.zeros(n_texts, np.int64)
    m = len(units)
    if m >= n:
        valid = text_of[: m - n + 1] == text_of[n - 1:]
        acc = np.zeros(m - n + 1, dtype=U64)
        with np.errstate(over="ignore"):
            for k in range(n):  # units are mixed already: a polynomial, then one mix
                acc *= _P
                acc += units[k: m - n + 1 + k]
        grams, gtext = mix64(acc[valid]), text_of[: m - n + 1][valid]
    else:
        grams, gtext = np.zeros(0, U64), np.zeros(0, np.int64)
    short = np.flatnonzero((counts_units > 0) & (counts_units < n))
    if len(short):  # texts shorter than one shingle: one shingle of all their units
        first = np.zeros(n_texts, dtype=np.int64)
        np.cumsum(counts_units[:-1], out=first[1:])
        acc = np.zeros(len(short), dtype=U64)
        cnt, at = counts_units[short], first[short]
        with np.errstate(over="ignore"):
            for k in range(n - 1):
                has = cnt > k
                acc[has] = acc[has] * _P + units[at[has] + k]
        grams = np.concatenate([grams, mix64(acc)])
        gtext = np.concatenate([gtext, short])
        order = np.argsort(gtext, kind="stable")
        grams, gtext = grams[order], gtext[order]
    return grams, np.bincount(gtext, minlength=n_texts).astype(np.int64)


def shingle_hashes(texts: list[str], shingle: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of each normalised text's shingles (flat, text after text, repeats kept)
    and the count per text."""
    if shingle not in SHINGLES:
        raise ValueError(shingle)
    hashes, counts = [], []
    lo = 0
    lens = [len(t) for t in texts]
    while lo < len(texts):  # groups of texts of about CHUNK code points
        hi, size = lo + 1, lens[lo]
        while hi < len(texts) and size + lens[hi] <= CHUNK:
            size += lens[hi]
            hi += 1
        h, c = _shingle_group(texts[lo:hi], shingle, n)
        hashes.append(h)
        counts.append(c)
        lo = hi
    if not hashes:
        return np.zeros(0, U64), np.zeros(0, np.int64)
    return np.concatenate(hashes), np.concatenate(counts)


_CHAR_TABLE: list[np.ndarray] = []


def _char_table() -> np.ndarray:
    """A mixed 64-bit hash of every code point (9 MB, built on first use)."""
    if not _CHAR_TABLE:
        _CHAR_TABLE.append(mix64(np.arange(1, 0x110001, dtype=U64)))
    return _CHAR_TABLE[0]


def _shingle_group(texts: list[str], shingle: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    codes, starts = _codes(texts)
    if shingle == "word":
        units, text_of = _word_hashes(codes, starts)
    else:
        inside = np.ones(len(codes), dtype=bool)
        inside[starts[1:] - 1] = False  # the joining spaces are not part of any text
        units = _char_table()[codes[inside]]
        text_of = np.repeat(np.arange(len(texts)), [len(t) for t in texts])
    return _ngrams(units, text_of, len(texts), n)


def shingle_sets(hashes: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each text's shingle set as sorted unique 32-bit hashes (flat) and the size per text."""
    text_of = np.repeat(np.arange(len(counts), dtype=U64), counts)
    keys = sorted_unique((text_of << _S32) | (hashes >> _S32))
    sizes = np.bincount((keys >> _S32).astype(np.int64), minlength=len(counts))
    return (keys & U64(0xFFFFFFFF)).astype(np.uint32), sizes.astype(np.int64)


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique for integers by sort + compare: numpy 2.4's np.unique (hash based) is ~50x
    slower on 10⁶ uint64."""
    x = np.sort(x)
    keep = np.ones(len(x), dtype=bool)
    keep[1:] = x[1:] != x[:-1]
    return x[keep]


# --- signatures and banding -----------------------------------------------------------------

def signatures(hashes: np.ndarray, counts: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """R-MinHash signatures (uint32, one row per text) of the flat shingle hashes."""
    import rensa

    offsets = np.zeros(len(counts) + 1, dtype=np.uint64)
    np.cumsum(counts, out=offsets[1:])
    mat = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
        np.ascontiguousarray(hashes, dtype=U64), offsets, num_perm, seed)
    # to_rows (lists of ints) is the only way out of rensa; array.array reads them ~2x faster
    # than np.array, and this conversion still costs 4x the signatures themselves.
    flat = array.array("I", itertools.chain.from_iterable(mat.to_rows()))
    return np.frombuffer(flat, dtype=np.uint32).reshape(len(counts), num_perm)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One uint64 bucket key per (text, band): band j mixes signature values j·r … j·r+r−1."""
    out = np.empty((sig.shape[0], bands), dtype=U64)
    with np.errstate(over="ignore"):
        for j in range(bands):
            h = np.full(sig.shape[0], U64(j) * _GOLD + U64(1), dtype=U64)
            for k in range(j * rows, (j + 1) * rows):
                h = mix64(h * _P + sig[:, k].astype(U64))
            out[:, j] = h
    return out


def collision_probability(s: float, bands: int, rows: int) -> float:
    """P that a pair at Jaccard s shares at least one bucket: 1 − (1 − s^r)^b."""
    return 1.0 - (1.0 - s ** rows) ** bands


@dataclass(frozen=True)
class LshParams:
    bands: int
    rows: int
    num_perm: int
    threshold: float
    s_hi: float

    @property
    def p_threshold(self) -> float:
        return collision_probability(self.threshold, self.bands, self.rows)

    @property
    def p_hi(self) -> float:
        return collision_probability(self.s_hi, self.bands, self.rows)

    def doc(self) -> dict:
        return {"bands": self.bands, "rows": self.rows, "num_perm": self.num_perm,
                "p_collide_at_threshold": round(self.p_threshold, 4),
                f"p_collide_at_{self.s_hi:g}": round(self.p_hi, 4),
                "false_candidate_area": round(_fp_area(self.threshold, self.bands,
                                                       self.rows), 5)}


def upper_similarity(threshold: float) -> float:
    """The Jaccard at which recall is guaranteed: threshold + 0.05, or halfway to 1 above 0.9
    (at 0.96, s = 1.01 would be impossible and s = 1 would only protect identical sets)."""
    return threshold + min(MARGIN, (1.0 - threshold) / 2)


def _fp_area(threshold: float, bands: int, rows: int, steps: int = 200) -> float:
    """∫₀^threshold P(s) ds by the midpoint rule: the expected false-candidate rate for pairs
    spread evenly below the threshold."""
    h = threshold / steps
    return h * sum(collision_probability((i + 0.5) * h, bands, rows) for i in range(steps))


def lsh_params(threshold: float, num_perm: int) -> LshParams | None:
    """The bands × rows meeting P(s_hi) ≥ 0.98 with the fewest false candidates (None when no
    split of num_perm can meet it)."""
    s_hi = upper_similarity(threshold)
    best = None
    for r in range(1, num_perm + 1):
        q = s_hi ** r
        if q >= 1.0:
            b = 1
        elif q * num_perm < 1 - TARGET:  # even num_perm bands of r rows cannot reach it
            break
        else:
            b = max(1, math.ceil(math.log(1 - TARGET) / math.log1p(-q)))
        while b * r <= num_perm and collision_probability(s_hi, b, r) < TARGET:
            b += 1  # float rounding in the closed form
        if b * r > num_perm:
            continue
        key = (_fp_area(threshold, b, r), b)
        if best is None or key < best[0]:
            best = (key, b, r)
    if best is None:
        return None
    return LshParams(best[1], best[2], num_perm, threshold, s_hi)


# --- candidates, verification, clusters -----------------------------------------------------

def bucket_pairs(keys: np.ndarray, window: int = 16) -> np.ndarray:
    """Candidate pairs of one band as uint64 codes (a << 32 | b, a < b). ``keys[i]`` is the
    bucket key of row i, rows numbered in rank order (0 = best)."""
    srt = np.argsort(keys, kind="stable")  # stable: rank order inside each bucket
    ks = keys[srt]
    same = ks[1:] == ks[:-1]
    if not same.any():
        return np.zeros(0, U64)
    member = np.zeros(len(ks), dtype=bool)
    member[1:] |= same
    member[:-1] |= same
    sel = np.flatnonzero(member)
    ks, rows = ks[sel], srt[sel].astype(U64)
    start = np.ones(len(ks), dtype=bool)
    start[1:] = ks[1:] != ks[:-1]
    run = np.cumsum(start) - 1
    first = np.flatnonzero(start)[run]
    parts = [((rows[first] << _S32) | rows)[~start]]  # star: each member with the best one
    for d in range(1, window + 1):
        if d >= len(ks):
            break
        ok = (run[:-d] == run[d:]) & ~start[:-d]  # pairs with the first are in the star
        if not ok.any():
            break
        parts.append((rows[:-d][ok] << _S32) | rows[d:][ok])
    return np.concatenate(parts)


def pair_jaccard(values: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray,
                 block: int = 1 << 22) -> np.ndarray:
    """Exact Jaccard of the shingle sets of rows a[i] and b[i] (sets: ``values[offsets[k]:
    offsets[k+1]]``, sorted unique). Vectorised over pairs in blocks of ~``block`` shingles."""
    out = np.zeros(len(a), dtype=np.float64)
    la = offsets[a + 1] - offsets[a]
    lb = offsets[b + 1] - offsets[b]
    cost = np.cumsum(la + lb)
    lo = 0
    while lo < len(a):
        hi = int(np.searchsorted(cost, (cost[lo - 1] if lo else 0) + block, side="right"))
        hi = max(hi, lo + 1)
        out[lo:hi] = _jaccard_block(values, offsets, a[lo:hi], b[lo:hi], la[lo:hi],
                                    lb[lo:hi])
        lo = hi
    return out


def _gather(values, offsets, rows, lens) -> tuple[np.ndarray, np.ndarray]:
    pair = np.repeat(np.arange(len(rows), dtype=U64), lens)
    first = np.zeros(len(rows), dtype=np.int64)
    np.cumsum(lens[:-1], out=first[1:])
    idx = np.arange(int(lens.sum()), dtype=np.int64) - np.repeat(first - offsets[rows], lens)
    return (pair << _S32) | np.asarray(values[idx]).astype(U64), pair


def _jaccard_block(values, offsets, a, b, la, lb) -> np.ndarray:
    ka, _ = _gather(values, offsets, a, la)  # sorted: pair-major, each set sorted
    kb, pb = _gather(values, offsets, b, lb)
    if len(ka) and len(kb):
        pos = np.minimum(np.searchsorted(ka, kb), len(ka) - 1)
        hit = ka[pos] == kb
        inter = np.bincount(pb[hit].astype(np.int64), minlength=len(a))
    else:
        inter = np.zeros(len(a), dtype=np.int64)
    union = la + lb - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components of the graph (n nodes, edges a–b) by union-find with hooking and
    pointer jumping in numpy: the label of each node is its component's smallest node."""
    parent = np.arange(n, dtype=np.int64)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    while True:
        while True:  # full path compression
            pp = parent[parent]
            if np.array_equal(pp, parent):
                break
            parent = pp
        ra, rb = parent[a], parent[b]
        diff = ra != rb
        if not diff.any():
            return parent
        ra, rb = ra[diff], rb[diff]
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))
        a, b = a[diff], b[diff]
