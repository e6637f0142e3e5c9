"""What a reward-model checkpoint is, decided from its files before any weight is loaded.

Families (``--scorer``):
- ``step-prm``: the Qwen2.5-Math-PRM convention (also ReasonFlux-PRM-7B): architecture
  ``Qwen2ForProcessRewardModel``, a head ``score.0`` Linear(H, H) → ReLU → ``score.2``
  Linear(H, 2), one reward per ``<extra_0>`` separator.
- ``seq-prm``: the ReasonFlux-PRM-1.5B convention: a causal LM plus ``reward_head.pt``, a
  Linear(H, 1) on the last token, then a sigmoid.

A checkpoint is a local folder or a hub id (resolved offline-first through the local cache with
``huggingface_hub.snapshot_download``). The head's shape is read from the safetensors header, so
a model that would give vocabulary-sized outputs (ReasonFlux issue #20: a step PRM loaded as a
causal LM) is refused before loading gigabytes.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from ..errors import InputError

STEP_SEPARATOR = "<extra_0>"
STEP_HEAD_KEYS = ("score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias")
SEQ_HEAD_FILE = "reward_head.pt"


@dataclass
class Checkpoint:
    model: str  # what the user named (hub id or path)
    path: Path  # local folder
    config: dict
    family: str | None = None  # the scorer family that reads it (curate.registry)
    revision: str | None = None
    head_shapes: dict[str, list[int]] = field(default_factory=dict)
    shapes: dict[str, list[int]] = field(default_factory=dict)  # every tensor's shape

    @property
    def architectures(self) -> list[str]:
        return list(self.config.get("architectures") or [])

    @property
    def label(self) -> str:
        """What the `scorer` column records: model@revision."""
        return f"{self.model}@{self.revision or 'local'}"

    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def max_len(self) -> int:
        return int(self.config.get("max_position_embeddings") or 0) or 32768

    def weight_files(self) -> list[Path]:
        files = sorted(self.path.glob("*.safetensors")) + sorted(self.path.glob("*.bin"))
        if (self.path / SEQ_HEAD_FILE).exists():
            files.append(self.path / SEQ_HEAD_FILE)
        return files

    @functools.cached_property
    def _weights_digest(self) -> tuple[int, str]:
        h = xxhash.xxh3_64()
        total = 0
        for f in self.weight_files():
            size = f.stat().st_size
            total += size
            h.update(f.name.encode())
            h.update(str(size).encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                if size > 2 << 20:
                    fh.seek(-(1 << 20), os.SEEK_END)
                    h.update(fh.read(1 << 20))
        return total, h.hexdigest()

    def fingerprint(self) -> dict:
        """Provenance for the manifest: sizes plus xxh3 of the head and tail of each weight file
        (hashing 15 GB of weights in full would cost more than scoring a small set); read once."""
        total, digest = self._weights_digest
        return {"model": self.model, "path": str(self.path), "revision": self.revision,
                "family": self.family, "architectures": self.config.get("architectures"),
                "weight_bytes": total, "weights_xxh3_head_tail": digest}

    def key(self) -> str:
        """Identity of the model for resume/incremental checks."""
        fp = self.fingerprint()
        return f"{self.model}@{self.revision or 'local'}:{fp['weights_xxh3_head_tail']}"


def resolve(model: str, revision: str | None = None) -> tuple[Path, str | None]:
    """Local folder of a model path or hub id."""
    p = Path(model).expanduser()
    if p.exists():
        if not p.is_dir():
            raise InputError(f"--model {model}: not a folder (a checkpoint is a folder with "
                             "config.json)")
        return p, revision
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise InputError(f"--model {model}: no such folder")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - datasets depends on it
        raise InputError(f"--model {model}: no such folder") from None
    try:
        local = snapshot_download(model, revision=revision, local_files_only=True)
    except Exception:  # not cached: try the hub (fails fast offline)
        from ..io.sources import hub_reachable

        if not hub_reachable():
            raise InputError(f"--model {model}: not a local folder, not in the local hub cache, "
                             "and the hub cannot be reached from here") from None
        try:
            local = snapshot_download(model, revision=revision,
                                      allow_patterns=["*.json", "*.safetensors", "*.txt",
                                                      "*.model", "*.py", SEQ_HEAD_FILE])
        except Exception as e:  # noqa: BLE001 - many hub error types
            raise InputError(f"--model {model}: cannot download ({str(e).splitlines()[0]})") \
                from None
    return Path(local), revision or Path(local).name


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor shapes from the safetensors headers (no weights read)."""
    shapes: dict[str, list[int]] = {}
    for f in sorted(path.glob("*.safetensors")):
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for k, v in header.items():
            if k != "__metadata__":
                shapes[k] = v["shape"]
    return shapes


def load(model: str, revision: str | None = None) -> Checkpoint:
    """A checkpoint's files, config and tensor shapes (no weights read). Raises InputError."""
    path, rev = resolve(model, revision)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise InputError(f"--model {model}: {path} has no config.json")
    try:
        config = json.loads(cfg_file.read_text())
    except ValueError as e:
        raise InputError(f"--model {model}: config.json is not valid JSON ({e})") from None
    if "hidden_size" not in config:
        raise InputError(f"--model {model}: config.json has no hidden_size; not a transformer "
                         "checkpoint curate knows")
    return Checkpoint(model=model, path=path, config=config, revision=rev,
                      shapes=_safetensors_shapes(path))


def inspect(model: str, scorer: str = "auto", revision: str | None = None) -> Checkpoint:
    """Decide the scorer family of a checkpoint (the registered families, in order, for
    ``auto``), or refuse with one line (InputError)."""
    from ..registry import get_scorer, scorers

    ckpt = load(model, revision)
    if scorer == "auto":
        families = [f for f in scorers() if f.needs_model]
        family = next((f for f in families if f.detect(ckpt)), None)
        if family is None:
            hints = [h for f in families if (h := f.near_miss(ckpt))]
            archs = ckpt.architectures or "unknown"
            if hints:
                raise InputError(f"--model {model}: architecture {archs} is not one curate "
                                 f"knows, {hints[0]}")
            raise InputError(
                f"--model {model}: architecture {archs} is not a process reward model curate "
                f"knows (step PRMs: *ForProcessRewardModel with a score.0/score.2 head; "
                f"sequence PRMs: a causal LM with {SEQ_HEAD_FILE}); a causal LM's "
                "vocabulary-sized output is not a reward (a generative verifier such as "
                "ThinkPRM writes a critique: --scorer thinkprm)")
    else:
        family = get_scorer(scorer)
        if not family.needs_model:
            raise InputError(f"--scorer {scorer} runs without a model; drop --model")
    ckpt.head_shapes = family.check(ckpt)
    ckpt.family = family.name
    return ckpt


def transformers_knows(ckpt: Checkpoint) -> bool:
    """Whether transformers has its own classes for the checkpoint's model_type (then its remote
    code, if any, is never needed to load the body)."""
    from transformers import CONFIG_MAPPING

    return ckpt.config.get("model_type") in CONFIG_MAPPING
