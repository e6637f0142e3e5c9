"""The `curate run` config: a TOML file (or a dict of the same shape) whose sections are the
registered stages and whose keys are the stages' own options.

The keys come from each stage's ``Options`` declaration (``curate.options``), so a new option,
or a new registered stage, is a new key or section with no edit here. ``load`` / ``parse``
return a validated ``RunConfig`` or raise an ``InputError`` naming the file, section and key.
"""

from __future__ import annotations

import json
import shlex
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..options import OptionSpec, did_you_mean, type_name, typed

RUN_KEYS = ("out", "stages")
# Keys the run sets itself, and why (a config that sets them is refused with the reason).
MANAGED = {"quiet": "pass --quiet to `curate run`", "verbose": "pass --verbose to `curate run`",
           "json": "pass --json to `curate run`",
           "overwrite": "the run replaces only the stage folders it wrote itself",
           "output": "the run writes each stage to OUT/<stage> ([run] out sets OUT)",
           "dry-run": "use `curate run --dry-run`"}
_POSITIONAL_WHY = {"export": "{stage} checks the export of this run",
                   "run": "{stage} reads this run's folder",
                   "traces": "{stage} reads the output of the stage before it"}
INPUTS = OptionSpec(key="inputs", flag="INPUT", kind="list", param="inputs", default=None,
                    help="Files, folders, globs, saved datasets folders or hub dataset ids.",
                    required=True)
# Values `curate run --example` writes as active lines (the rest are commented out).
EXAMPLE = {"run": {"out": "out/curate"},
           "read": {"inputs": ["traces/*.parquet"]},
           "filter": {"per-question": 4},
           "decontam": {"against": ["math500", "gsm8k", "aime24", "aime25"]},
           "export": {"format": "messages", "think-style": "r1"}}


@dataclass(frozen=True)
class StageSpec:
    """A stage as a config section: its keys, and the keys the run manages with why."""

    name: str
    options: dict[str, OptionSpec]
    managed: dict[str, str] = field(default_factory=dict)
    stage: type | None = None


def stage_specs() -> dict[str, StageSpec]:
    """One StageSpec per registered stage, in flow order."""
    from ..registry import stages

    out = {}
    for cls in stages():
        options = dict(cls.Options.specs())
        managed = dict(MANAGED)
        if cls.takes == "files":
            options = {"inputs": INPUTS, **options}
        else:
            key = {"export": "exported", "run": "folder"}.get(cls.takes, "inputs")
            managed[key] = _POSITIONAL_WHY[cls.takes].format(stage=cls.name)
        if cls.writes is None:
            for k in ("output", "overwrite"):
                managed.pop(k)
        if cls.dry_run is None:
            managed.pop("dry-run")
        out[cls.name] = StageSpec(cls.name, options, managed, cls)
    return out


@dataclass
class RunConfig:
    path: Path
    out: Path
    stages: list[str]
    # Per stage: every option with its value, defaults filled in (so that writing a default
    # explicitly and leaving it out are the same config).
    options: dict[str, dict[str, object]]
    notes: list[str] = field(default_factory=list)
    # (section, key) → the `--set` item that gave the value, so a refusal names it, not the file
    overrides: dict[tuple[str, str], str] = field(default_factory=dict)

    def origin(self, section: str) -> str:
        """Where a stage's values come from, for the start of an error line."""
        items = [v for (sec, _), v in self.overrides.items() if sec == section]
        return f"{self.path}" + (f" with --set {', '.join(items)}" if items else "")


def load(config: str | Path | dict, specs: dict[str, StageSpec] | None = None,
         overrides: list[str] | None = None) -> RunConfig:
    """Parse and validate a config (a TOML path, or a dict of the same shape), with
    ``--set SECTION.KEY=VALUE`` overrides applied first. Raises InputError."""
    if isinstance(config, dict):
        doc, p = json.loads(json.dumps(config, default=str)), Path("<config>")
    else:
        p = Path(config)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"{p}: no such config file (write one with `curate run --example "
                             f"> {p.name}`)") from None
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"{p}: cannot read the config ({e})") from None
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise InputError(f"{p}: not valid TOML: {e}") from None
    given = {}
    for item in overrides or []:
        section, key = apply_override(doc, item)
        given[(section, key.replace("_", "-"))] = item
    cfg = parse(doc, p, specs, given)
    cfg.overrides = given
    return cfg


def apply_override(doc: dict, item: str) -> tuple[str, str]:
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
    return section, key.strip()


def parse(doc: dict, path: Path, specs: dict[str, StageSpec] | None = None,
          overrides: dict[tuple[str, str], str] | None = None) -> RunConfig:
    specs = specs if specs is not None else stage_specs()
    valid_sections = ("run", *specs)
    for name, value in doc.items():
        if not isinstance(value, dict) and name in RUN_KEYS:
            raise InputError(f"{path}: '{name}' must be a section key, not a top-level one; "
                             f"put it under [run]")
        if name not in valid_sections:
            hint = did_you_mean(name, valid_sections)
            raise InputError(f"{path}: unknown section [{name}]{hint} "
                             f"(valid: {', '.join(f'[{s}]' for s in valid_sections)})")
        if not isinstance(value, dict):
            raise InputError(f"{path}: '{name}' must be a section ([{name}]), not "
                             f"{type_name(value)}")
    run = doc.get("run", {})
    for key in run:
        if key not in RUN_KEYS:
            raise InputError(f"{path}: [run] unknown key '{key}'{did_you_mean(key, RUN_KEYS)} "
                             f"(valid: {', '.join(RUN_KEYS)})")
    out = run.get("out", f"out/{path.stem}")
    if not isinstance(out, str) or not out:
        raise InputError(f"{path}: [run] out must be a folder path (a string), not "
                         f"{type_name(out)}")

    options = {name: _stage_options(path, specs[name], doc.get(name, {}), overrides or {})
               for name in specs}
    stages, notes = _stage_list(path, run, doc, specs)
    check_order(path, stages, options, specs)
    for name in stages:
        for key, opt in specs[name].options.items():
            if opt.required and options[name][key] in (None, [], ""):
                raise InputError(f"{path}: [{name}] needs {key} ({opt.help or opt.flag})")
    return RunConfig(path=path, out=Path(out), stages=stages,
                     options={s: options[s] for s in stages}, notes=notes)


def _stage_options(path: Path, spec: StageSpec, table: dict,
                   overrides: dict[tuple[str, str], str]) -> dict[str, object]:
    values = {k: o.default for k, o in spec.options.items()}
    seen: dict[str, str] = {}
    for raw, value in table.items():
        key = raw.replace("_", "-")
        if key in seen:
            raise InputError(f"{path}: [{spec.name}] sets {key} twice ('{seen[key]}' and "
                             f"'{raw}')")
        seen[key] = raw
        # a value given by --set is that option's fault, not the file's
        where = f"--set {overrides[(spec.name, key)]}:" if (spec.name, key) in overrides \
            else f"{path}:"
        if key in spec.managed:
            raise InputError(f"{where} [{spec.name}] {raw}: {spec.managed[key]}; remove it")
        opt = spec.options.get(key)
        if opt is None:
            valid = sorted(spec.options)
            raise InputError(f"{where} [{spec.name}] unknown key '{raw}'"
                             f"{did_you_mean(key, valid)} (valid: {', '.join(valid)})")
        try:
            values[key] = typed(opt, raw, value)
        except InputError as e:
            raise InputError(f"{where} [{spec.name}] {e}") from None
    return values


def _stage_list(path: Path, run: dict, doc: dict, specs: dict[str, StageSpec]):
    notes: list[str] = []
    known = list(specs)
    last = [s for s in known if specs[s].stage is not None and specs[s].stage.takes == "run"]
    if "stages" in run:
        stages = run["stages"]
        if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
            raise InputError(f"{path}: [run] stages must be a list of stage names, e.g. "
                             f"[\"read\", \"score\", \"export\"]")
        for s in stages:
            if s not in known:
                raise InputError(f"{path}: [run] stages: unknown stage '{s}'"
                                 f"{did_you_mean(s, known)} (valid: {', '.join(known)})")
        for s in set(stages):
            if stages.count(s) > 1:
                raise InputError(f"{path}: [run] stages: '{s}' appears {stages.count(s)} times; "
                                 "each stage runs at most once")
        for s in known:
            if s in doc and s not in stages:
                notes.append(f"[{s}] is not in [run] stages, so it does not run")
        stages = list(stages)
    else:
        stages = [s for s in known if s in doc]
    # The report ends every run, listed or not.
    for s in last:
        if s not in stages:
            stages.append(s)
    return stages, notes


def check_order(path: Path, stages: list[str], options: dict[str, dict],
                specs: dict[str, StageSpec]) -> None:
    """Refuse a stage list that cannot work, naming the stage and what it needs."""
    def fail(msg: str):
        raise InputError(f"{path}: [run] stages {stages}: {msg}")

    cls = {s: specs[s].stage for s in stages}
    first = [s for s in specs if specs[s].stage is not None and specs[s].stage.takes == "files"]
    if not stages or cls[stages[0]] is None or cls[stages[0]].takes != "files":
        fail(f"the first stage must be {' or '.join(first) or 'read'} (it turns [read] inputs "
             "into traces every other stage reads)")
    pos = {s: i for i, s in enumerate(stages)}
    sft = [s for s in stages if cls[s].writes == "sft"]
    for s in stages:
        c = cls[s]
        if c.takes == "files" and pos[s] != 0:
            fail(f"{s} reads input files, so it must be the first stage")
        if c.takes == "traces" and c.writes is not None:
            for e in sft:
                if pos[s] > pos[e]:
                    fail(f"{s} comes after {e}, but {e} writes SFT records, not traces; "
                         f"move {s} before {e}")
        if c.takes == "export" and (not sft or pos[s] < pos[sft[0]]):
            fail(f"{s} checks the export's shards, so export must run before it")
        if c.takes == "run" and pos[s] != len(stages) - 1:
            fail(f"{s} reads every stage's manifest, so it must be the last stage")
        scored = any(cls[x].provides_score for x in stages[: pos[s]])
        need = _needs_score(specs[s], options[s])
        if need and not scored:
            fail(f"[{s}] {need} ranks by score, but no score stage runs before {s}; add "
                 f"score before it (or set allow-unscored = true to rank by id)")


def _needs_score(spec: StageSpec, values: dict) -> str | None:
    try:
        opts = build_options(spec, values)
    except InputError:
        return None  # its own check reports this, with the section named
    return spec.stage().needs_score(opts)


def build_options(spec: StageSpec, values: dict):
    """The stage's Options from its config values (the read stage's inputs left out)."""
    return spec.stage.Options.build({k: v for k, v in values.items() if k != "inputs"})


# --- the equivalent command line and the annotated example --------------------------------------

def stage_argv(spec: StageSpec, values: dict) -> list[str]:
    """The options that give the stage command these values (defaults left out)."""
    argv = []
    for key, opt in spec.options.items():
        v = values.get(key, opt.default)
        if key == "inputs" or v is None or v == opt.default or v == []:
            continue
        if opt.kind == "bool":
            argv.append(opt.flag if v else f"--no-{key}")
        elif opt.kind == "list":
            for item in v:
                argv += [opt.flag, str(item)]
        else:
            argv += [opt.flag, repr(v) if isinstance(v, float) else str(v)]
    return argv


def command_line(spec: StageSpec, inputs: list[str], folder: Path | None,
                 values: dict) -> str:
    """`curate STAGE INPUT… -o FOLDER --opt …`: the stand-alone command a run's stage is."""
    argv = [spec.name, *inputs, *(["-o", str(folder)] if folder is not None else []),
            *stage_argv(spec, values)]
    return "curate " + shlex.join(argv)


def example_config(specs: dict[str, StageSpec] | None = None) -> str:
    """The annotated config `curate run --example` prints: every option of every stage, with
    its help and default; the EXAMPLE values active, the rest commented out."""
    specs = specs if specs is not None else stage_specs()
    flow = ", ".join(f'"{s}"' for s in specs if s != "validate")
    lines = [
        "# curate run config: `curate run THIS_FILE`. Sections are stages; keys are the stage",
        "# command's options without the leading dashes (`per-question = 4` in [filter] is",
        "# `curate filter --per-question 4`); see `curate <stage> --help`. A stage runs when its",
        "# section is present (an empty section runs it with the defaults), in flow order, and",
        "# the report always ends the run. Paths are relative to the folder you run from.",
        "",
        "[run]",
        "# Folder of the run: each stage writes OUT/<stage>, and OUT/run.json remembers what",
        "# is done, so a rerun skips the stages whose options and input did not change.",
        f'out = "{EXAMPLE["run"]["out"]}"',
        "# Stage order, when not the flow order (filter, dedup and decontam may be reordered;",
        "# e.g. dedup before score saves scoring duplicates).",
        f"# stages = [{flow}]",
    ]
    for stage, spec in specs.items():
        commented = spec.stage is not None and any(o.required for k, o in spec.options.items()
                                                   if k != "inputs")
        c = "# " if commented else ""
        lines += ["", f"{c}[{stage}]", f"# {spec.stage.help if spec.stage else ''}"]
        if commented:
            lines.append(f"# Uncomment to run {stage} (it needs "
                         f"{', '.join(k for k, o in spec.options.items() if o.required)}).")
            for note in getattr(spec.stage, "run_notes", ()):
                lines.append(f"# {note}")
        for key, opt in spec.options.items():
            for h in textwrap.wrap(opt.help, 94, break_on_hyphens=False,
                                   break_long_words=False):
                lines.append(f"# {h}")
            active = EXAMPLE.get(stage, {})
            if key in active and not commented:
                lines.append(f"{key} = {_toml(active[key])}")
            elif opt.default is None:
                lines.append(f"# {key} = {_placeholder(opt)}")
            else:
                lines.append(f"# {key} = {_toml(opt.default)}")
    return "\n".join(lines) + "\n"


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v, ensure_ascii=False)  # str and list of str: TOML in JSON spelling


def _placeholder(opt: OptionSpec) -> str:
    return {"int": "<integer>", "float": "<number>", "str": '"<text>"', "list": '["<text>"]',
            "bool": "false"}[opt.kind] + ("   (required)" if opt.required else "   (unset)")
