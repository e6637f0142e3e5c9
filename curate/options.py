"""Stage options: declared once, as a dataclass, and built the same way from every front end.

A stage's ``Options`` is a dataclass whose user-facing fields are declared with ``option()``
(help text, and where the command line spells it differently, its flag). From that one
declaration come the command's flags (``curate <stage> --help``), the keys of the stage's
section in a ``curate run`` config, ``curate run --example``, and the equivalent command line
recorded in a manifest. ``Options.build(values)`` is the one constructor for all three front
ends (CLI values, a TOML section, Python keyword arguments): it checks names and types, then
the dataclass's ``__post_init__`` checks values. Every refusal is an ``InputError`` naming the
option. Fields declared without ``option()`` are internal (tests, benchmarks) and are neither
flags nor config keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import InputError

KINDS = ("bool", "int", "float", "str", "list")
_META = "curate"


@dataclass(frozen=True)
class OptionSpec:
    """One user-facing option of a stage."""

    key: str            # config key = long flag without dashes, e.g. per-question
    flag: str           # command-line spelling, e.g. --per-question
    kind: str           # bool, int, float, str or list (of str)
    param: str          # the dataclass field, e.g. per_question
    default: Any        # None when unset
    help: str = ""
    short: str | None = None     # e.g. -m
    metavar: str | None = None
    required: bool = False


def option(default: Any = None, *, help: str, flag: str | None = None,  # noqa: A002
           short: str | None = None, metavar: str | None = None,
           required: bool = False) -> Any:
    """Declare a user-facing option field (see the module text). List options default to
    None (= empty); give them ``list[str] | None``."""
    return dataclasses.field(default=default, metadata={_META: {
        "help": " ".join(help.split()), "flag": flag, "short": short, "metavar": metavar,
        "required": required}})


def _kind(hint) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0]
    if typing.get_origin(hint) is list or hint is list:
        return "list"
    kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(hint)
    if kind is None:
        raise TypeError(f"option type {hint!r}: use bool, int, float, str or list[str]")
    return kind


@dataclass
class StageOptions:
    """Base of every stage's options (see the module text)."""

    _specs: ClassVar[dict[str, dict[str, OptionSpec]]] = {}

    @classmethod
    def specs(cls) -> dict[str, OptionSpec]:
        """The user-facing options, keyed by config key, in declaration order."""
        cached = StageOptions._specs.get(cls.__qualname__ + "@" + cls.__module__)
        if cached is not None:
            return cached
        hints = typing.get_type_hints(cls)
        out: dict[str, OptionSpec] = {}
        for f in dataclasses.fields(cls):
            meta = f.metadata.get(_META)
            if meta is None:
                continue
            key = (meta["flag"] or f"--{f.name.rstrip('_').replace('_', '-')}")[2:]
            default = None if f.default is dataclasses.MISSING else f.default
            out[key] = OptionSpec(key=key, flag=f"--{key}", kind=_kind(hints[f.name]),
                                  param=f.name, default=default, help=meta["help"],
                                  short=meta["short"], metavar=meta["metavar"],
                                  required=meta["required"])
        StageOptions._specs[cls.__qualname__ + "@" + cls.__module__] = out
        return out

    @classmethod
    def build(cls, values: typing.Mapping[str, Any] | None = None, **kwargs):
        """The options from a mapping of config keys (``per-question``) or field names
        (``per_question``) to values, as TOML or Python gives them. Raises InputError."""
        specs = cls.specs()
        by_param = {s.param: s for s in specs.values()}
        given = {**(values or {}), **kwargs}
        fields: dict[str, Any] = {}
        seen: dict[str, str] = {}
        for raw, value in given.items():
            key = raw.replace("_", "-")
            spec = specs.get(key) or by_param.get(raw)
            if spec is None:
                valid = sorted(specs)
                raise InputError(f"unknown option '{raw}'{did_you_mean(key, valid)} "
                                 f"(valid: {', '.join(valid) or 'none'})")
            if spec.key in seen:
                raise InputError(f"{spec.key} given twice ('{seen[spec.key]}' and '{raw}')")
            seen[spec.key] = raw
            fields[spec.param] = typed(spec, raw, value)
        for spec in specs.values():
            if spec.required and fields.get(spec.param, spec.default) in (None, [], ""):
                raise InputError(f"{spec.flag} is required ({spec.help})")
        return cls(**fields)

    def values(self) -> dict[str, Any]:
        """The user-facing options by config key (what a manifest and a fingerprint record)."""
        return {k: _plain(getattr(self, s.param)) for k, s in self.specs().items()}

    def config(self) -> dict[str, Any]:
        """Every field, internal ones included, for the manifest."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def explicit(self) -> dict[str, Any]:
        """The user-facing options that differ from their defaults."""
        return {k: v for k, v in self.values().items()
                if v != _plain(self.specs()[k].default) and v not in (None, [])}


def _plain(value):
    if isinstance(value, tuple):
        return list(value)
    return value


def typed(spec: OptionSpec, raw: str, value):
    """``value`` checked against the option's kind, as TOML types it (no string coercion:
    ``"4"`` is not an integer). A single string is accepted for a list."""
    def bad(expected: str):
        return InputError(f"{raw} must be {expected}, not {type_name(value)} {value!r}")

    if value is None:
        return None
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
    elif spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
    elif spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        value = float(value)
    elif spec.kind == "str":
        if not isinstance(value, str):
            raise bad("a string")
    elif spec.kind == "list":
        if isinstance(value, str):
            value = [value]
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
    return value


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def type_name(value) -> str:
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


def one_of(option: str, value: str, choices) -> None:
    """Refuse ``value`` when it is not one of ``choices`` (InputError naming the option)."""
    if value not in choices:
        raise InputError(f"{option} '{value}': expected one of {', '.join(choices)}"
                         f"{did_you_mean(value, choices)}")
