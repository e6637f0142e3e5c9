"""Text normalisation and stable text keys shared by the selection stages.

``normalize_text``: Unicode NFKC (full-width digits, ligatures and compatibility forms become
their plain forms), then case folding (``str.casefold``: "Straße" and "STRASSE" agree), then
every run of whitespace becomes one space and the ends are stripped. Numbers are left alone:
maths problems that differ only in their numbers are different problems.

``text_key``: xxh3-64 of the normalised text's UTF-8, as 16 hex digits. Stable across runs,
machines and library versions (polars' own ``hash`` is not), so keys written in one run can be
compared with keys of another.
"""

from __future__ import annotations

import unicodedata

import xxhash


def normalize_text(text: str | None) -> str:
    if not text:
        return ""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_key(text: str | None) -> str:
    return xxhash.xxh3_64_hexdigest(normalize_text(text).encode("utf-8", "surrogatepass"))


def text_keys(texts: list[str | None]) -> list[str]:
    return [text_key(t) for t in texts]
