"""Getting transformers ready, for every transformers engine: quiet logs, a device that exists,
the dtype, and a model loaded from a checkpoint's weights with curate's remote-code rule."""

from __future__ import annotations

from ..errors import InputError
from .checkpoint import Checkpoint, transformers_knows


def prepare(device: str, dtype: str) -> tuple[str, object]:
    """(dtype name, torch dtype) to run in: auto is bfloat16 on a GPU, float32 on CPU.
    InputError for a GPU that is not there or a dtype torch does not have."""
    import torch
    from transformers.utils import logging as hf_logging

    # Load reports (a head's score.* tensors listed as unexpected: the head is ours) and the
    # weight-loading bar would duplicate curate's own progress: keep stderr clean.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA GPU is visible")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise InputError(f"--dtype {dtype}: expected auto, float32, bfloat16 or float16")
    return dtype, getattr(torch, dtype)


def load_model(auto_class, ckpt: Checkpoint, torch_dtype, trust_remote_code: bool):
    """``auto_class.from_pretrained`` with sdpa attention where the architecture has it.

    The model is loaded from its weights with transformers' own class whenever transformers
    knows the model type (qwen2), whatever --trust-remote-code says: the remote class of
    Qwen2.5-Math-PRM is the whole reward model and returns logits, not hidden states. Remote
    code is used only for a model type transformers does not know."""
    kw = {"dtype": torch_dtype,
          "trust_remote_code": trust_remote_code and not transformers_knows(ckpt)}
    try:
        return auto_class.from_pretrained(ckpt.path, attn_implementation="sdpa", **kw)
    except (ValueError, ImportError):  # an architecture without sdpa support
        return auto_class.from_pretrained(ckpt.path, **kw)
