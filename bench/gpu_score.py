#!/usr/bin/env python
"""GPU benchmark of the transformers engine: tokens/s and MFU of step-PRM scoring.

One prepared script for a machine with a GPU (torch + transformers, no hub access): builds a
random-initialised step PRM with Qwen2.5-1.5B's shape (``--shape 7b`` for 7B's), in bf16, scores
synthetic traces of 4k and 16k tokens (a separator every ~200 tokens) with curate's hf engine,
and prints tokens/s and MFU.

MFU = useful FLOPs / time / peak. Useful FLOPs per token = 2 × non-embedding parameters plus the
causal attention term 2 × layers × hidden × seq_len (scores and weighted sum over on average
half the sequence, forward only). The peak is measured in the same script by a large bf16
matmul, so the figure is relative to what this card actually does, not its datasheet.

    python bench/gpu_score.py                    # 1.5B shape, 4k and 16k tokens
    python bench/gpu_score.py --shape 7b --record
    python bench/gpu_score.py --shape tiny --device cpu --lengths 256   # smoke test anywhere
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {  # hidden, layers, heads, kv_heads, intermediate, vocab
    "tiny": (64, 2, 2, 1, 128, 4000),
    "1.5b": (1536, 28, 12, 2, 8960, 151936),
    "7b": (3584, 28, 28, 4, 18944, 152064),
}


def peak_flops(device: str, n: int = 8192, repeats: int = 10) -> float:
    import torch

    dtype = torch.bfloat16
    if device == "cpu":
        n = 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=SHAPES, default="1.5b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--lengths", default="4096,16384")
    ap.add_argument("--tokens", type=int, default=262_144, help="tokens scored per length")
    ap.add_argument("--batch-tokens", type=int, default=65_536)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    import torch

    sys.path.insert(0, str(ROOT))
    from curate.scoring.checkpoint import inspect
    from curate.scoring.engine_hf import HFEngine
    from curate.testing.tiny_models import build_step_prm

    hidden, layers, heads, kv, inter, vocab = SHAPES[args.shape]
    lengths = [int(x) for x in args.lengths.split(",")]
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model = build_step_prm(Path(tmp) / "prm", hidden=hidden, layers=layers, heads=heads,
                               kv_heads=kv, intermediate=inter, tokenizer=False,
                               vocab_size=vocab, max_position_embeddings=max(lengths) + 8)
        build_s = time.perf_counter() - t0
        ckpt = inspect(str(model), scorer="step-prm")
        dtype = "float32" if args.device == "cpu" else "bfloat16"
        engine = HFEngine(ckpt, device=args.device, dtype=dtype, batch_tokens=args.batch_tokens)
        params = sum(p.numel() for n, p in engine.body.named_parameters()
                     if "embed_tokens" not in n)
        params += sum(p.numel() for p in engine.head.parameters())
        peak = peak_flops(args.device)
        sep, pad = vocab - 1, 0
        gen = torch.Generator().manual_seed(0)
        for length in lengths:
            n_seq = max(1, args.tokens // length)
            seqs = []
            for _ in range(n_seq):
                ids = torch.randint(1, vocab - 1, (length,), generator=gen)
                ids[199::200] = sep  # a step every 200 tokens
                ids[-1] = sep
                seqs.append(ids.tolist())
            engine.step_probs(seqs[:1], sep, pad)  # warm-up
            times = []
            for _ in range(args.repeats):
                _sync(args.device)
                t0 = time.perf_counter()
                engine.step_probs(seqs, sep, pad)
                _sync(args.device)
                times.append(time.perf_counter() - t0)
            t = statistics.median(times)
            tokens = n_seq * length
            flops = tokens * (2 * params + 2 * layers * hidden * length)
            lines.append(f"{args.shape} shape, {length} tokens x {n_seq} traces: "
                         f"{tokens / t:,.0f} tokens/s, {flops / t / 1e12:.1f} TFLOP/s, MFU "
                         f"{flops / t / peak:.1%} of measured peak "
                         f"(target >= 50%){'' if flops / t / peak >= 0.5 else '  TARGET MISSED'}")
    card = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    head = [f"gpu score bench: {card}, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, torch "
            f"{torch.__version__}, hf engine {dtype}, batch tokens {args.batch_tokens}, "
            f"medians of {args.repeats}",
            f"non-embedding parameters {params / 1e9:.2f} B; measured peak "
            f"{peak / 1e12:.1f} TFLOP/s (bf16 matmul); checkpoint built in {build_s:.1f} s"]
    print("\n".join(head + lines))
    if args.record:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write("\n## gpu score bench\n\n```\n" + "\n".join(head + lines) + "\n```\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
