"""A compact set of ids seen so far, with where each was first seen.

Checking 10M ids for repeats must not cost 10M Python objects. Each id is kept as a 64-bit
xxh3 hash plus a 64-bit position (16 bytes a row) in a few sorted numpy runs that merge like a
log-structured tree (a new run merges with the previous one while it is at least as large), so
inserting N ids costs O(N log N) and a lookup a binary search per run (O(log² N)).

Two different ids share a 64-bit hash with probability about n²/2^65 (3e-6 for 10M ids); such a
pair would be reported as a repeat. That is the price of bounded memory, and it errs loud.
"""

from __future__ import annotations

import numpy as np
import xxhash


def hash_ids(ids: list[str]) -> np.ndarray:
    return np.fromiter((xxhash.xxh3_64_intdigest(i.encode("utf-8", "surrogatepass"))
                        for i in ids), dtype=np.uint64, count=len(ids))


class IdSet:
    def __init__(self):
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted hashes, positions)
        self.size = 0

    def _lookup(self, hashes: np.ndarray) -> np.ndarray:
        """Position where each hash was first seen, or -1."""
        found = np.full(len(hashes), -1, dtype=np.int64)
        for keys, pos in self._runs:
            idx = np.searchsorted(keys, hashes)
            idx_c = np.minimum(idx, len(keys) - 1)
            hit = (idx < len(keys)) & (keys[idx_c] == hashes) & (found < 0)
            found[hit] = pos[idx_c[hit]]
        return found

    def add_batch(self, hashes: np.ndarray, positions: np.ndarray,
                  active: np.ndarray | None = None) -> np.ndarray:
        """Insert the active rows' hashes; return, for each row, the position it repeats or -1.

        A repeat within the batch points at its first occurrence in the batch. Rows that are
        repeats, or not active, are not inserted.
        """
        n = len(hashes)
        first = self._lookup(hashes) if self._runs else np.full(n, -1, dtype=np.int64)
        active = np.ones(n, dtype=bool) if active is None else active
        first[~active] = -1
        # repeats inside the batch: the first active occurrence wins
        order = np.argsort(hashes, kind="stable")
        sorted_h = hashes[order]
        sorted_active = active[order]
        new = []
        last_h, last_pos = None, -1
        for k in range(n):  # cheap: n is one batch
            i = order[k]
            if not sorted_active[k]:
                continue
            h = sorted_h[k]
            if first[i] >= 0:
                continue
            if last_h is not None and h == last_h:
                first[i] = last_pos
                continue
            last_h, last_pos = h, positions[i]
            new.append(i)
        if new:
            idx = np.asarray(new, dtype=np.int64)
            keys, pos = hashes[idx], positions[idx].astype(np.int64)
            srt = np.argsort(keys, kind="stable")
            self._push(keys[srt], pos[srt])
            self.size += len(idx)
        return first

    def _push(self, keys: np.ndarray, pos: np.ndarray) -> None:
        self._runs.append((keys, pos))
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= len(self._runs[-1][0]):
            (k2, p2), (k1, p1) = self._runs.pop(), self._runs.pop()
            keys = np.concatenate([k1, k2])
            pos = np.concatenate([p1, p2])
            srt = np.argsort(keys, kind="stable")
            self._runs.append((keys[srt], pos[srt]))
