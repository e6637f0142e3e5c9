#!/usr/bin/env python
"""Benchmark of the signals scorer's sentence encoders: full all-MiniLM-L6-v2 against the static
embeddings distilled from it (``curate.signals.encoder``), on real reasoning steps.

* speed: sentences/s of ``minilm`` (the transformer, fp32, batch 64) on ``--full-steps`` steps
  and of ``minilm-static`` on ``--static-steps`` steps, medians of ``--repeats`` runs;
* agreement: for ``--pairs`` pairs of consecutive steps and ``--pairs`` (step, final response)
  pairs, the Spearman and Pearson correlation between the static cosine and the full cosine;
* separation: under each encoder, the mean cosine of consecutive steps against that of a step and
  a random step of another trace, and the AUC (the chance a consecutive pair's cosine beats a
  random pair's).

Steps are ``response_steps`` (and ``response``) of ../shared/data/real/processbench.parquet. The
static encoder is distilled into a temporary folder (timed) unless ``--cache-dir`` is given.
Torch and the tokenizers are pinned to ``--threads`` threads. Not a test: it reports and exits 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real" / "processbench.parquet"


def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _auc(pos, neg) -> float:
    from scipy.stats import rankdata

    r = rankdata(list(pos) + list(neg))
    n1, n0 = len(pos), len(neg)
    return float((r[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--full-steps", type=int, default=512)
    ap.add_argument("--static-steps", type=int, default=20_000)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default=None,
                    help="curate cache to take the static encoder from (default: distil it "
                         "into a temporary folder and time that)")
    ap.add_argument("--record", action="store_true", help="append the result to RESULTS.md")
    args = ap.parse_args()

    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[k] = str(args.threads)

    import numpy as np
    import pyarrow.parquet as pq
    import torch
    from scipy.stats import pearsonr, spearmanr

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    sys.path.insert(0, str(ROOT))
    from curate.signals.encoder import STATIC_VERSION, load_encoder

    table = pq.read_table(args.data, columns=["response_steps", "response"]).to_pydict()
    traces = [([s for s in steps if s and s.strip()], resp)
              for steps, resp in zip(table["response_steps"], table["response"], strict=True)]
    all_steps = [s for steps, _ in traces for s in steps]
    rng = np.random.default_rng(args.seed)

    # --- load both encoders (the static one distilled now, unless cached) ---
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache_dir or tmp
        t0 = time.perf_counter()
        static = load_encoder("minilm-static", cache_dir=cache)
        first_load = time.perf_counter() - t0
        load_s = _timed(lambda: load_encoder("minilm-static", cache_dir=cache), 3)
        folder = Path(cache) / "encoders" / STATIC_VERSION
        size_mb = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
    if args.cache_dir:
        distill_line = (f"distillation: cached in {folder} (made in "
                        f"{static.meta.get('distill_seconds')} s)")
    else:
        distill_line = (f"distillation: {first_load:.1f} s, end to end from a cold cache "
                        f"({static.meta['forward_seconds']} s in the {static.meta['vocab_size']}"
                        f"-token forward loop)")
    t0 = time.perf_counter()
    full = load_encoder("minilm")
    full_load = time.perf_counter() - t0

    # --- speed ---
    def sample(n):
        idx = rng.choice(len(all_steps), size=n, replace=n > len(all_steps))
        return [all_steps[i] for i in idx]

    full_texts = sample(args.full_steps)
    static_texts = sample(args.static_steps)
    full.encode(full_texts[:64])  # warm-up
    static.encode(static_texts[:1000])
    t_full = _timed(lambda: full.encode(full_texts), args.repeats)
    t_static = _timed(lambda: static.encode(static_texts), args.repeats)
    sps_full = len(full_texts) / t_full
    sps_static = len(static_texts) / t_static

    # --- agreement and separation: one pair per trace, traces drawn without replacement ---
    usable = [i for i, (steps, _) in enumerate(traces) if len(steps) >= 2]
    chosen = rng.choice(usable, size=args.pairs, replace=args.pairs > len(usable))
    cons, step_resp = [], []
    for i in chosen:
        steps, resp = traces[i]
        j = int(rng.integers(len(steps) - 1))
        cons.append((steps[j], steps[j + 1]))
        step_resp.append((steps[j], resp))
    # a random step of another trace: the successor of pair k+1 (a different trace: one pair
    # per trace), after a shuffle
    perm = rng.permutation(len(cons))
    rand = [(cons[perm[k]][0], cons[perm[(k + 1) % len(perm)]][1]) for k in range(len(perm))]
    texts = sorted({t for pairs in (cons, step_resp, rand) for p in pairs for t in p})
    index = {t: i for i, t in enumerate(texts)}
    t0 = time.perf_counter()
    emb = {"minilm": full.encode(texts), "minilm-static": static.encode(texts)}
    full_quality_s = time.perf_counter() - t0

    def cos(name, pairs):
        e = emb[name]
        a = np.array([index[p[0]] for p in pairs])
        b = np.array([index[p[1]] for p in pairs])
        return np.einsum("ij,ij->i", e[a], e[b]).astype(np.float64)

    now = dt.datetime.now(dt.UTC)
    import model2vec
    import sentence_transformers

    lines = [
        f"encoder bench: {now:%Y-%m-%d %H:%M} UTC, {platform.machine()}, nproc {os.cpu_count()}, "
        f"torch {torch.__version__} threads {torch.get_num_threads()}, sentence-transformers "
        f"{sentence_transformers.__version__}, model2vec {model2vec.__version__}; "
        f"{Path(args.data).name}: {len(traces)} traces, {len(all_steps)} steps; medians of "
        f"{args.repeats}",
        f"{distill_line}; cached load {load_s:.2f} s; folder {size_mb:.1f} MB; static dim "
        f"{static.dim}, max_length {static.max_length} tokens; full minilm load {full_load:.1f} s",
        f"speed minilm (fp32, batch 64, max_length {full.max_length}): {sps_full:,.1f} "
        f"sentences/s ({len(full_texts)} steps in {t_full:.2f} s)",
        f"speed minilm-static: {sps_static:,.0f} sentences/s ({len(static_texts)} steps in "
        f"{t_static:.2f} s)",
        f"speed ratio minilm-static / minilm: {sps_static / sps_full:,.0f}x",
    ]
    for label, pairs in (("consecutive steps", cons), ("(step, response)", step_resp)):
        s, f = cos("minilm-static", pairs), cos("minilm", pairs)
        lines.append(f"agreement static vs full cosine, {len(pairs)} {label} pairs: Spearman "
                     f"{spearmanr(s, f)[0]:.3f}, Pearson {pearsonr(s, f)[0]:.3f} (mean cosine "
                     f"static {s.mean():.3f}, full {f.mean():.3f})")
    for name in ("minilm", "minilm-static"):
        c, r = cos(name, cons), cos(name, rand)
        lines.append(f"separation {name}: consecutive steps {c.mean():.3f} vs random steps of "
                     f"other traces {r.mean():.3f} (gap {c.mean() - r.mean():.3f}, "
                     f"AUC {_auc(c, r):.3f})")
    lines.append(f"(full minilm on the {len(texts)} agreement texts, responses included: "
                 f"{full_quality_s:.1f} s, {len(texts) / full_quality_s:.1f} texts/s)")
    print("\n".join(lines))
    if args.record:
        with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
            fh.write(f"\n## encoder bench, {now:%Y-%m-%d %H:%M} UTC\n\n"
                     "`bench/encoder_bench.py`: full all-MiniLM-L6-v2 vs the static embeddings "
                     "distilled from it, on ProcessBench steps.\n"
                     "\n```\n" + "\n".join(lines) + "\n```\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
