"""How each stage's summary is shown in the terminal: one module per stage, ``render(ui, s)``.

A stage without a view of its own (a stage added through the registry) gets ``generic``: its
summary's plain values as a two-column table.
"""

from __future__ import annotations

import importlib
import importlib.util

from ..output import Ui, summary_table


def render_for(stage: str):
    """The view module named after the stage, if there is one, else the generic table."""
    if stage.isidentifier() and importlib.util.find_spec(f"{__name__}.{stage}") is not None:
        return importlib.import_module(f"{__name__}.{stage}").render
    return lambda ui, s: generic(ui, s, stage)


def generic(ui: Ui, s: dict, stage: str) -> None:
    t = summary_table(f"curate {stage}" + (f" → {s['output']}" if s.get("output") else ""))
    for key, value in s.items():
        if key == "output" or isinstance(value, (dict, list)) and not value:
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, int):
            value = f"{value:,}"
        t.add_row(key.replace("_", " "), str(value))
    ui.out.print(t)
