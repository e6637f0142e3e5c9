"""curate: turn reasoning traces into ranked, clean SFT shards.

The library is importable on its own; the command line lives in ``curate_cli`` (folder ``cli/``).
Heavy dependencies (torch, transformers, vllm, datasets, polars) are imported where they are
used, and the names below are loaded on first access, so ``import curate`` is cheap.

The public extension points (docs/DESIGN.md has an example of each):

* ``curate.run(config)``: the whole flow from a TOML path or a dict of the same shape;
* ``curate.run_stage(stage, inputs, out, options)``: one stage;
* ``curate.Stage`` / ``curate.MapStage`` / ``curate.StageOptions`` / ``curate.option``,
  ``curate.register_stage``: a stage of your own, in the CLI's config and the report;
* ``curate.Scorer`` / ``curate.ScorerFamily`` / ``curate.register_scorer``: a scorer;
* ``curate.Engine`` / ``curate.register_engine``: an engine (a way to run models).
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "run": "curate.flow.runner:run",
    "StageFailed": "curate.flow.runner:StageFailed",
    "run_stage": "curate.stage:run_stage",
    "Stage": "curate.stage:Stage",
    "MapStage": "curate.stage:MapStage",
    "Chunk": "curate.stage:Chunk",
    "StageContext": "curate.stage:StageContext",
    "StageResult": "curate.stage:StageResult",
    "Reporter": "curate.stage:Reporter",
    "StageOptions": "curate.options:StageOptions",
    "option": "curate.options:option",
    "dropped_rows": "curate.dropped:dropped_rows",
    "register_stage": "curate.registry:register_stage",
    "unregister_stage": "curate.registry:unregister_stage",
    "register_scorer": "curate.registry:register_scorer",
    "register_engine": "curate.registry:register_engine",
    "Scorer": "curate.scoring.scorer:Scorer",
    "ScorerFamily": "curate.scoring.scorer:ScorerFamily",
    "ScoreColumns": "curate.scoring.scorer:ScoreColumns",
    "Engine": "curate.scoring.engine:Engine",
    "InputError": "curate.errors:InputError",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    target = _PUBLIC.get(name)
    if target is None:
        raise AttributeError(f"module 'curate' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
