"""How `curate report` shows its summary."""

from __future__ import annotations

from ..output import Ui


def render(ui: Ui, data: dict) -> None:
    from curate.report.terminal import render

    render(data, ui.out)
