"""`curate run CONFIG.toml`: the flow from one config (``curate.run``), shown in the terminal."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import Json, Quiet, Verbose
from .output import Ui, fail, handled

SHORT = "Run the whole flow (read → score → … → report) from one TOML config, resumably."
HELP = """Run the flow read → score → filter → dedup → decontam → export → validate → report in one process, from a TOML config whose sections are the stages and whose keys are the stage commands' own options (`per-question = 4` in \\[filter] is `curate filter --per-question 4`).

Each stage writes OUT/<stage> (\\[run] out, default out/<config name>) and reads the one before it. A rerun skips every stage that completed with the same options and input (and whose folder still holds every part it wrote), resumes one that can resume (score continues from its last chunk), and reruns a changed stage and everything after it; OUT/run.json remembers. The report ends every run.

[bold]Examples[/bold]

  curate run --example > curate.toml          # an annotated config: every option of every stage
  curate run sample_data/demo.toml            # the bundled demo: offline, CPU, signals scorer
  curate run curate.toml --dry-run            # which stages would run, skip or resume, and why
  curate run curate.toml --from filter        # rerun filter and everything after it
  curate run curate.toml --set filter.per-question=2   # one key changed for this run

From Python: `curate.run("curate.toml")` or `curate.run({...})` does the same. A config error stops before any stage runs (exit 2); a stage that fails stops the run with its exit code, and the stages before it stay done."""  # noqa: E501


def run(
    config: Annotated[str | None, typer.Argument(
        help="The run's TOML config (see --example).", show_default=False,
        metavar="CONFIG")] = None,
    example: Annotated[bool, typer.Option(
        "--example", metavar="", help="Print an annotated config with every option of every "
                                      "stage, and exit.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", metavar="", help="Print which stages would run, skip or resume and why, "
                                      "with the equivalent commands; run nothing.")] = False,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override one config key for this run: SECTION.KEY=VALUE, e.g. --set "
                      "filter.per-question=2 (repeatable; VALUE is read as TOML, else as text).",
        show_default=False)] = None,
    from_: Annotated[str | None, typer.Option(
        "--from", help="Rerun this stage and every stage after it, even if complete.",
        show_default=False)] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
    json_out: Json = False,
):
    ui = Ui(quiet=quiet, verbose=verbose, json=json_out)
    with handled(ui):
        from curate.errors import InputError
        from curate.flow.config import example_config
        from curate.flow.runner import StageFailed
        from curate.flow.runner import run as run_flow

        from .views.run import RunReporter, render

        if example:
            typer.echo(example_config(), nl=False)
            return
        if config is None:
            raise InputError("CONFIG is missing: `curate run CONFIG.toml` (write one with "
                             "`curate run --example > curate.toml`)")
        try:
            doc = run_flow(config, dry_run=dry_run, start=from_, overrides=set_,
                           reporter=RunReporter(ui))
        except StageFailed as e:
            try:  # the stage's own error line, as its command prints it
                with handled(Ui(quiet=quiet, verbose=verbose)):
                    raise e.error
            except typer.Exit:
                pass
            raise fail(ui, str(e), e.exit_code) from None
        ui.result(doc, render)
    if doc["exit_code"]:
        raise typer.Exit(doc["exit_code"])
