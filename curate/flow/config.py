"""The `curate run` config: a TOML file whose sections are the stages and whose keys are the
stage commands' own option names.

This module knows nothing about the CLI: the caller passes one ``StageSpec`` per stage (built
from the sub-commands' signatures, so a new option is a new config key with no edit here) and
gets back a validated ``RunConfig`` or an ``InputError`` naming the file, section and key.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

# The flow order; `curate run` may reorder the selection stages (see check_order).
STAGES = ("read", "score", "filter", "dedup", "decontam", "export", "validate", "report")
SELECTION = ("filter", "dedup", "decontam")
RUN_KEYS = ("out", "stages")
# filter options that rank or cut by score: they need a score stage before filter.
NEEDS_SCORE = {"filter": ("min-score", "per-question", "top-k", "top-frac")}


@dataclass(frozen=True)
class OptionSpec:
    """One option of a stage command, as a config key."""

    key: str            # the config key: the long option without its dashes, e.g. per-question
    flag: str           # the command-line spelling, e.g. --per-question
    kind: str           # int, float, str, bool or list (of str)
    param: str          # the command function's parameter, e.g. per_question
    default: object     # the command's default (None when it has none)
    required: bool = False
    positional: bool = False
    help: str = ""


@dataclass(frozen=True)
class StageSpec:
    name: str
    options: dict[str, OptionSpec]
    # Keys the run sets itself (input and output folders, --overwrite, --json …), with why.
    managed: dict[str, str] = field(default_factory=dict)


@dataclass
class RunConfig:
    path: Path
    out: Path
    stages: list[str]
    # Per stage: every option with its value, defaults filled in (so that writing a default
    # explicitly and leaving it out are the same config).
    options: dict[str, dict[str, object]]
    notes: list[str] = field(default_factory=list)

    def explicit(self, stage: str, specs: dict[str, StageSpec]) -> dict[str, object]:
        """The options of ``stage`` that differ from the command's defaults."""
        spec = specs[stage].options
        return {k: v for k, v in self.options[stage].items() if v != spec[k].default}


def load(path: str | Path, specs: dict[str, StageSpec],
         overrides: list[str] | None = None) -> RunConfig:
    """Parse and validate CONFIG, with ``--set SECTION.KEY=VALUE`` overrides applied first.
    Raises InputError with one line naming what is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: no such config file (write one with `curate run --example > "
                         f"{p.name}`)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: cannot read the config ({e})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{p}: not valid TOML: {e}") from None
    for item in overrides or []:
        apply_override(doc, item)
    return parse(doc, p, specs)


def apply_override(doc: dict, item: str) -> None:
    """``SECTION.KEY=VALUE`` into the parsed config. VALUE is read as a TOML value (`2`,
    `true`, `["a", "b"]`, `"text"`), else taken as a plain string; the type check that follows
    is the one every config key gets."""
    target, eq, raw = item.partition("=")
    section, dot, key = target.strip().partition(".")
    if not eq or not dot or not section or not key.strip():
        raise InputError(f"--set '{item}': expected SECTION.KEY=VALUE, e.g. "
                         "--set filter.per-question=2")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    table = doc.setdefault(section, {})
    if not isinstance(table, dict):
        raise InputError(f"--set '{item}': '{section}' is not a section of the config")
    table[key.strip()] = value


def parse(doc: dict, path: Path, specs: dict[str, StageSpec]) -> RunConfig:
    valid_sections = ("run",) + tuple(s for s in STAGES if s in specs)
    for name, value in doc.items():
        if not isinstance(value, dict) and name in RUN_KEYS:
            raise InputError(f"{path}: '{name}' must be a section key, not a top-level one; "
                             f"put it under [run]")
        if name not in valid_sections:
            hint = _did_you_mean(name, valid_sections)
            raise InputError(f"{path}: unknown section [{name}]{hint} "
                             f"(valid: {', '.join(f'[{s}]' for s in valid_sections)})")
        if not isinstance(value, dict):
            raise InputError(f"{path}: '{name}' must be a section ([{name}]), not "
                             f"{_toml_type(value)}")
    run = doc.get("run", {})
    for key in run:
        if key not in RUN_KEYS:
            raise InputError(f"{path}: [run] unknown key '{key}'{_did_you_mean(key, RUN_KEYS)} "
                             f"(valid: {', '.join(RUN_KEYS)})")
    out = run.get("out", f"out/{path.stem}")
    if not isinstance(out, str) or not out:
        raise InputError(f"{path}: [run] out must be a folder path (a string), not "
                         f"{_toml_type(out)}")

    options = {name: _stage_options(path, specs[name], doc.get(name, {}))
               for name in specs}
    stages, notes = _stage_list(path, run, doc, specs)
    check_order(path, stages, options)
    for name in stages:
        for key, opt in specs[name].options.items():
            if opt.required and options[name][key] in (None, [], ""):
                raise InputError(f"{path}: [{name}] needs {key} ({opt.help or opt.flag})")
    return RunConfig(path=path, out=Path(out), stages=stages,
                     options={s: options[s] for s in stages}, notes=notes)


def _stage_options(path: Path, spec: StageSpec, table: dict) -> dict[str, object]:
    values = {k: o.default for k, o in spec.options.items()}
    seen: dict[str, str] = {}
    for raw, value in table.items():
        key = raw.replace("_", "-")
        if key in seen:
            raise InputError(f"{path}: [{spec.name}] sets {key} twice ('{seen[key]}' and "
                             f"'{raw}')")
        seen[key] = raw
        if key in spec.managed:
            raise InputError(f"{path}: [{spec.name}] {raw}: {spec.managed[key]}; remove it")
        opt = spec.options.get(key)
        if opt is None:
            valid = sorted(spec.options)
            raise InputError(f"{path}: [{spec.name}] unknown key '{raw}'"
                             f"{_did_you_mean(key, valid)} (valid: {', '.join(valid)})")
        values[key] = _typed(path, spec.name, raw, opt, value)
    return values


def _typed(path: Path, stage: str, raw: str, opt: OptionSpec, value):
    """The value checked against the option's type (TOML types, no string coercion)."""
    def bad(expected: str):
        return InputError(f"{path}: [{stage}] {raw} must be {expected}, not "
                          f"{_toml_type(value)} {value!r}")

    if opt.kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
    elif opt.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
    elif opt.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        value = float(value)
    elif opt.kind == "str":
        if not isinstance(value, str):
            raise bad("a string")
    elif opt.kind == "list":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
    return value


def _stage_list(path: Path, run: dict, doc: dict, specs: dict[str, StageSpec]):
    notes: list[str] = []
    known = [s for s in STAGES if s in specs]
    if "stages" in run:
        stages = run["stages"]
        if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
            raise InputError(f"{path}: [run] stages must be a list of stage names, e.g. "
                             f"[\"read\", \"score\", \"export\"]")
        for s in stages:
            if s not in known:
                raise InputError(f"{path}: [run] stages: unknown stage '{s}'"
                                 f"{_did_you_mean(s, known)} (valid: {', '.join(known)})")
        for s in set(stages):
            if stages.count(s) > 1:
                raise InputError(f"{path}: [run] stages: '{s}' appears {stages.count(s)} times; "
                                 "each stage runs at most once")
        for s in known:
            if s in doc and s not in stages:
                notes.append(f"[{s}] is not in [run] stages, so it does not run")
    else:
        # The sections present, in flow order; the report always ends the run.
        stages = [s for s in known if s in doc or s == "report"]
    return list(stages), notes


def check_order(path: Path, stages: list[str], options: dict[str, dict]) -> None:
    """Refuse a stage list that cannot work, naming the stage and what it needs."""
    def fail(msg: str):
        raise InputError(f"{path}: [run] stages {stages}: {msg}")

    if not stages or stages[0] != "read":
        fail("the first stage must be read (it turns [read] inputs into traces every other "
             "stage reads)")
    pos = {s: i for i, s in enumerate(stages)}
    for s in ("score",) + SELECTION:
        if s in pos and "export" in pos and pos[s] > pos["export"]:
            fail(f"{s} comes after export, but export writes SFT records, not traces; "
                 f"move {s} before export")
    if "validate" in pos and ("export" not in pos or pos["validate"] < pos["export"]):
        fail("validate checks the export's shards, so export must run before it")
    if "report" in pos and pos["report"] != len(stages) - 1:
        fail("report reads every stage's manifest, so it must be the last stage")
    for s, keys in NEEDS_SCORE.items():
        if s not in pos:
            continue
        if options[s].get("allow-unscored"):
            continue
        used = [k for k in keys if options[s].get(k) is not None]
        if used and pos.get("score", len(stages)) > pos[s]:
            fail(f"[{s}] {used[0]} ranks by score, but no score stage runs before {s}; add "
                 f"score before it (or set allow-unscored = true to rank by id)")


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _toml_type(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__
