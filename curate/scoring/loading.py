"""How a scorer and the engine it needs are obtained from the score stage's options: the
registered scorer family (named or detected from the checkpoint), and the registered engine
that offers the capability the scorer needs (``curate.registry``). Used by the score stage and
by `curate eval`, so that both score the same way."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from .engine import Engine, EngineOptions, LazyEngine, unsupported
from .scorer import Scorer


@dataclass
class Loaded:
    """A scorer with its checkpoint and engine (built lazily: loaded at the first forward pass),
    the way the score stage and `curate eval` get them."""

    scorer: Scorer
    ckpt: object | None
    engine: object | None
    engine_name: str | None
    device: str | None


def load_scorer(opts, reporter=None) -> Loaded:
    """The registered scorer family the score options (``ScoreOptions``) name or detect, its
    scorer, and the engine it needs (lazy: loaded at the first forward pass). InputError for
    a checkpoint, scorer or engine that does not fit."""
    from ..registry import get_scorer
    from .checkpoint import inspect

    if opts.model is None:
        family = get_scorer("signals" if opts.scorer == "auto" else opts.scorer)
        if family.needs_model:
            raise InputError(f"--scorer {opts.scorer} needs --model")
        return Loaded(family.build(opts, None, reporter), None, None, None, None)
    ckpt = inspect(opts.model, opts.scorer, opts.revision)
    family = get_scorer(ckpt.family)
    scorer = family.build(opts, ckpt, reporter)
    devices = opts.device_list
    engine = make_engine(opts.engine, ckpt, opts.engine_options(), scorer.needs, devices)
    device = ",".join(devices) if devices else opts.engine_options().resolved_device()
    return Loaded(scorer, ckpt, engine, engine.name, device)


def make_engine(name: str, ckpt, opts: EngineOptions, needs: str,
                devices: list[str] | None = None) -> Engine:
    """The engine ``name`` (or the first registered one that offers ``needs`` on the device for
    ``auto``), built lazily; one per device with ``devices``."""

    from dataclasses import replace

    opts = replace(opts, task=needs)  # the model is loaded for what the scorer needs
    device = devices[0] if devices and len(devices) == 1 else opts.resolved_device()
    cls = resolve_engine(name, needs, device)
    if needs not in cls.capabilities:
        raise unsupported(cls.name, cls.capabilities, needs)
    if devices and len(devices) > 1:
        from functools import partial

        from .multi import MultiDeviceEngine

        return LazyEngine(lambda: MultiDeviceEngine(partial(cls.create, ckpt, opts), devices),
                          cls.name)
    return LazyEngine(lambda: cls.create(ckpt, opts, device), cls.name)


def resolve_engine(name: str, needs: str, device: str):
    from ..registry import engine_names, get_engine

    if name != "auto":
        return get_engine(name)
    for candidate in engine_names():
        cls = get_engine(candidate)
        if needs in cls.capabilities and cls.available(device):
            return cls
    raise InputError(f"--engine auto: no engine here can compute {needs} on {device}")
