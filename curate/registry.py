"""The registries: the ordered list of stages, the scorer families and the engines.

Everything that needs "all stages" (the command line, ``curate run``'s config check, its
``--example``, the report's ordering) reads this list; nothing else spells it. Built-in entries
are named by import path and loaded on first use, so that importing curate stays light (no
torch, no polars until a stage needs them) and a stage module never has to be imported by the
module that lists it. A new stage, scorer or engine is one module plus one ``register_*`` call.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import InputError
from .options import did_you_mean

# The flow, in order. `curate run` runs the sections a config has, in this order.
_STAGES: dict[str, Any] = {
    "read": "curate.read.stage:ReadStage",
    "score": "curate.scoring.stage:ScoreStage",
    "filter": "curate.select.filter:FilterStage",
    "dedup": "curate.select.dedup:DedupStage",
    "decontam": "curate.select.decontam:DecontamStage",
    "export": "curate.export.stage:ExportStage",
    "validate": "curate.validate.stage:ValidateStage",
    "report": "curate.report.stage:ReportStage",
}

# The built-in stages' one-line help, so that `curate --help` lists them without importing
# them (each pulls in pyarrow or polars); a test checks these against the classes' own `help`.
_HELP = {
    "read": "Read traces from any supported input into a canonical dataset folder.",
    "score": "Score every step with a process reward model, or offline on CPU with the "
             "signals scorer.",
    "filter": "Keep the best traces: min score, global top-K, best K per question, SQL "
              "filters.",
    "dedup": "Remove exact and near-duplicate traces, keeping the best-scored of each cluster.",
    "decontam": "Drop traces that overlap a benchmark (n-gram and exact match).",
    "export": "Write ranked SFT shards (messages / ShareGPT / prompt-completion) and a card.",
    "validate": "Check exported shards under the student's template and run a quick SFT on "
                "them.",
    "report": "Render what happened at each stage in the terminal (or HTML / JSON).",
}

# Scorer families: `--scorer NAME`, and the order `--scorer auto` tries them on a checkpoint.
_SCORERS: dict[str, Any] = {
    "step-prm": "curate.scoring.step_prm:StepPRMFamily",
    "seq-prm": "curate.scoring.seq_prm:SeqPRMFamily",
    "signals": "curate.signals.scorer:SignalsFamily",
    "thinkprm": "curate.scoring.thinkprm:ThinkPRMFamily",
}

# Engines: `--engine NAME`. `auto` picks the first that can run the scorer on the device.
_ENGINES: dict[str, Any] = {
    "vllm": "curate.scoring.engine_vllm:VLLMEngine",
    "hf": "curate.scoring.engine_hf:HFEngine",
}


def _load(table: dict[str, Any], name: str):
    entry = table[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        table[name] = entry
    return entry


def _insert(table: dict[str, Any], name: str, entry, after: str | None,
            before: str | None) -> None:
    items = [(k, v) for k, v in table.items() if k != name]
    anchor = after or before
    if anchor is not None and anchor not in table:
        raise ValueError(f"no registered entry '{anchor}' to place '{name}' next to")
    pos = len(items)
    if anchor is not None:
        pos = [k for k, _ in items].index(anchor) + (1 if after else 0)
    items.insert(pos, (name, entry))
    table.clear()
    table.update(items)


# --- stages ------------------------------------------------------------------------------------

def stage_names() -> list[str]:
    return list(_STAGES)


def get_stage(name: str):
    """The Stage class registered as ``name`` (InputError naming the choices if none)."""
    if name not in _STAGES:
        raise InputError(f"unknown stage '{name}'{did_you_mean(name, _STAGES)} "
                         f"(stages: {', '.join(_STAGES)})")
    return _load(_STAGES, name)


def stage_help(name: str) -> str:
    """A stage's one-line help, without importing a built-in stage's module."""
    entry = _STAGES.get(name)
    if isinstance(entry, str) and name in _HELP:
        return _HELP[name]
    return get_stage(name).help


def stages() -> list:
    """Every registered Stage class, in flow order."""
    return [get_stage(n) for n in _STAGES]


def register_stage(cls, *, after: str | None = None, before: str | None = None) -> None:
    """Add a Stage class to the flow (at the end, or next to another stage); registering a
    name again replaces that stage in place."""
    if not getattr(cls, "name", None):
        raise ValueError("a stage needs a name")
    if cls.name in _STAGES and after is None and before is None:
        _STAGES[cls.name] = cls
        return
    if after is None and before is None and "report" in _STAGES:
        before = "report"  # the report reads every stage's folder: it stays last
    _insert(_STAGES, cls.name, cls, after, before)


def unregister_stage(name: str) -> None:
    _STAGES.pop(name, None)


# --- scorers and engines -----------------------------------------------------------------------

def scorer_names() -> list[str]:
    return list(_SCORERS)


def _choice(table: dict[str, Any], name: str, option: str):
    """The entry ``name`` of a table an option chooses from (``auto`` is the option's own)."""
    if name not in table:
        choices = ["auto", *table]
        raise InputError(f"{option} {name}: expected one of {', '.join(choices)}"
                         f"{did_you_mean(name, choices)}")
    return _load(table, name)


def get_scorer(name: str):
    return _choice(_SCORERS, name, "--scorer")


def scorers() -> list:
    return [get_scorer(n) for n in _SCORERS]


def register_scorer(name: str, family, *, before: str | None = None) -> None:
    """Add a scorer family (see ``curate.scoring.scorer.ScorerFamily``)."""
    _insert(_SCORERS, name, family, None, before)


def engine_names() -> list[str]:
    return list(_ENGINES)


def get_engine(name: str):
    return _choice(_ENGINES, name, "--engine")


def register_engine(name: str, cls, *, before: str | None = None) -> None:
    """Add an engine class (see ``curate.scoring.engine.Engine``)."""
    _insert(_ENGINES, name, cls, None, before)
