"""The dataset card (``README.md``) of an export: a YAML header the hub reads, then what a reader
needs to trust the shards: where the rows came from, how they were selected and ranked, counts,
the score distribution, the record format and the licence situation.

The header's ``configs`` name the shards per split (``data/train-*``, ``data/test-*``), which is
what makes ``datasets.load_dataset(OUT)`` read only the Parquet shards (not ``_dropped/``);
``dataset_info.features`` is produced by ``datasets`` itself from the shards' Arrow schema, so
the declared features and the files cannot disagree. The split sizes are exact:
``load_dataset`` checks them.

The selection history is read from the manifests: INPUT's ``_manifest.json`` and, through the
``inputs`` each manifest lists, the manifests of the folders before it (filter → score → read),
as far as they can still be found from the current directory.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..io.folder import is_curate_folder, manifest_path

HIST_BINS = 10
HIST_WIDTH = 40
MAX_SOURCES_LISTED = 50
MAX_FILES_LISTED = 20
MAX_CHAIN = 32


# --- the manifest chain ---------------------------------------------------------------------

def _folder_of(entry: dict) -> Path | None:
    """The curate folder an input fingerprint points into, if it is one that still exists."""
    path = entry.get("path")
    if not path or entry.get("kind") == "hub":
        return None
    p = Path(path)
    for cand in (p, p.parent, p.parent.parent):  # a part lies in OUT/data/
        if cand.is_dir() and is_curate_folder(cand):
            return cand
    return None


def manifest_chain(inputs: list[str]) -> list[dict]:
    """The stages that produced INPUT, oldest first: folder, stage, command, config, counts,
    and (for a stage whose inputs are not curate folders) those original inputs."""
    todo = [Path(a) for a in inputs if Path(a).is_dir() and is_curate_folder(a)]
    seen: set[str] = set()
    chain: list[dict] = []
    while todo and len(chain) < MAX_CHAIN:
        folder = todo.pop(0)
        key = os.path.realpath(folder)
        if key in seen:
            continue
        seen.add(key)
        try:
            doc = json.loads(manifest_path(folder).read_text())
        except (OSError, ValueError, AttributeError):
            continue
        upstream, originals = [], []
        for entry in doc.get("inputs") or []:
            parent = _folder_of(entry)
            if parent is not None:
                if os.path.realpath(parent) not in seen and parent not in upstream:
                    upstream.append(parent)
            else:
                originals.append(entry)
        chain.append({"folder": str(folder), "stage": doc.get("curate", {}).get("stage"),
                      "command": doc.get("command"), "config": doc.get("config") or {},
                      "counts": doc.get("counts") or {}, "originals": originals})
        todo.extend(upstream)
    return list(reversed(chain))


def _settings(config: dict) -> str:
    """The settings that were actually set (not null, false or empty), as `key=value`."""
    parts = []
    for k, v in config.items():
        if v is None or v is False or v == [] or v == {} or k == "batch_rows":
            continue
        parts.append(f"{k}={json.dumps(v, default=str)}")
    return ", ".join(parts) or "defaults"


# --- numbers ----------------------------------------------------------------------------------

def score_stats(scores: np.ndarray) -> dict | None:
    """min / median / max and a histogram of the finite scores (None when there are none)."""
    s = scores[np.isfinite(scores)]
    if s.size == 0:
        return None
    lo, hi = float(s.min()), float(s.max())
    edges = np.linspace(lo, hi, HIST_BINS + 1) if hi > lo else np.array([lo, lo + 1e-9])
    counts, _ = np.histogram(s, bins=edges)
    return {"rows": int(s.size), "null": int(scores.size - s.size), "min": round(lo, 6),
            "median": round(float(np.median(s)), 6), "max": round(hi, 6),
            "histogram": {"edges": [round(float(e), 6) for e in edges],
                          "counts": [int(c) for c in counts]}}


def histogram_text(stats: dict) -> str:
    edges, counts = stats["histogram"]["edges"], stats["histogram"]["counts"]
    top = max(counts) or 1
    width = max(len(f"{c:,}") for c in counts)
    lines = []
    for i, c in enumerate(counts):
        bar = "█" * math.ceil(HIST_WIDTH * c / top) if c else ""
        lines.append(f"{edges[i]:>8.4f} – {edges[i + 1]:<8.4f} {c:>{width},}  {bar}")
    return "\n".join(lines)


# --- YAML header ------------------------------------------------------------------------------

def yaml_header(schema: pa.Schema, splits: dict[str, dict]) -> str:
    """``configs`` (data files per split) and ``dataset_info`` (features, split sizes)."""
    import yaml
    from datasets import Features

    features = Features.from_arrow_schema(schema)
    names = [s for s in ("train", "test") if splits.get(s, {}).get("rows")]
    doc = {
        "configs": [{"config_name": "default",
                     "data_files": [{"split": s, "path": f"data/{s}-*"} for s in names]}],
        "dataset_info": {
            "features": features._to_yaml_list(),
            "splits": [{"name": s, "num_bytes": int(splits[s]["text_bytes"]),
                        "num_examples": int(splits[s]["rows"])} for s in names],
            "download_size": int(sum(splits[s]["file_bytes"] for s in names)),
            "dataset_size": int(sum(splits[s]["text_bytes"] for s in names)),
        },
        "task_categories": ["text-generation"],
        "tags": ["curate", "sft", "reasoning", "distillation"],
    }
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


# --- the card ---------------------------------------------------------------------------------

STYLE_TEXT = {
    "r1": "`<think>\\n{trajectory}\\n</think>\\n\\n{response}`",
    "openthoughts": "`<|begin_of_thought|>\\n\\n{trajectory}\\n\\n<|end_of_thought|>\\n\\n"
                    "<|begin_of_solution|>\\n\\n{response}\\n\\n<|end_of_solution|>`",
    "s1": "`<|im_start|>think\\n{trajectory}\\n<|im_start|>answer\\n{response}`",
    "none": "`{response}` (thinking dropped)",
}
FORMAT_TEXT = {
    "messages": "TRL conversational language modelling: `messages` = [system?, user, assistant] "
                "as `{role, content}`",
    "sharegpt": "LLaMA-Factory ShareGPT: `conversations` = [human, gpt] as `{from, value}`"
                " (+ `system` column when a system prompt is set); for TRL export with "
                "`--format messages` instead (TRL keeps the human/gpt role names)",
    "prompt-completion": "TRL conversational prompt-completion: `prompt` = [system?, user], "
                         "`completion` = [assistant], as `{role, content}`",
}


def _usage(path: str, fmt: str, has_system: bool) -> str:
    name = Path(path).name
    if fmt == "sharegpt":
        cols = '"messages": "conversations"' + (', "system": "system"' if has_system else "")
        return (
            "LLaMA-Factory (`data/dataset_info.json`):\n\n```json\n"
            f'{{"{name}": {{"file_name": "<path to this folder>/data", "formatting": "sharegpt",'
            f' "columns": {{{cols}}}}}}}\n```\n\n'
            "or with `datasets`:\n\n```python\nfrom datasets import load_dataset\n"
            f'ds = load_dataset("parquet", data_dir="{path}")\n```\n')
    return (
        "```python\nfrom datasets import load_dataset\nfrom trl import SFTTrainer\n\n"
        f'ds = load_dataset("{path}")   # or load_dataset("parquet", data_dir="{path}")\n'
        'trainer = SFTTrainer(model=STUDENT, train_dataset=ds["train"])   # set '
        "SFTConfig(max_length=...): TRL's default is 1024 tokens\n```\n")


def render(*, name: str, path: str, schema: pa.Schema, splits: dict[str, dict], fmt: str,
           style: str, system: str | None, ranking: str, counts: dict, score: dict | None,
           sources: Counter, inputs: list[dict], chain: list[dict], meta_columns: list[str],
           tokens: dict | None, split_test: float, split_key: str) -> str:
    """The whole README.md."""
    out = ["---", yaml_header(schema, splits).rstrip("\n"), "---", ""]
    total = sum(s["rows"] for s in splits.values())
    out += [f"# {name}", "",
            f"{total:,} reasoning traces as SFT records, written by `curate export`, ordered by "
            f"rank (rank 1 = best: {ranking}).", ""]
    out += ["## Use", "", _usage(path, fmt, system is not None)]

    out += ["## Format", "",
            f"- record: {FORMAT_TEXT[fmt]}",
            f"- assistant text (think style `{style}`): {STYLE_TEXT[style]}; a trace without "
            "thinking has no thinking block",
            f"- system prompt: {json.dumps(system) if system is not None else 'none'}",
            "- `id`: the trace id; `rank`: 1-based position in the ranking over all splits",
            f"- metadata columns: {', '.join(f'`{c}`' for c in meta_columns) or 'none'}", ""]

    out += ["## Splits and counts", "", "| split | rows | shards | text bytes | file bytes |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for s, d in splits.items():
        if d["rows"]:
            out.append(f"| {s} | {d['rows']:,} | {d['shards']} | {d['text_bytes']:,} | "
                       f"{d['file_bytes']:,} |")
    out.append("")
    if split_test:
        out += [f"The test split holds the rows whose {split_key} hashes (xxh3-64) below "
                f"{split_test} of the hash range: about {split_test:.1%} of the rows, drawn "
                "uniformly across ranks, independent of row order.", ""]
    out.append(f"- rows read: {counts['rows_in']:,}")
    out.append(f"- rows exported: {counts['rows_out']:,}")
    for reason, n in (counts.get("dropped") or {}).items():
        out.append(f"- left out, `{reason}`: {n:,}")
    if counts.get("rows_without_thinking"):
        out.append(f"- rows without thinking (no thinking block): "
                   f"{counts['rows_without_thinking']:,}")
    out.append("")

    out += ["## Score distribution", ""]
    if score is None:
        out += ["No `score` column (the rows were not scored).", ""]
    else:
        out += [f"`score` of {score['rows']:,} rows ({score['null']:,} null): min "
                f"{score['min']:.4f}, median {score['median']:.4f}, max {score['max']:.4f}.",
                "", "```", histogram_text(score), "```", ""]
    if tokens:
        out += ["## Length under the student's chat template", "",
                f"Tokenizer `{tokens['tokenizer']}`: median {tokens['median']:,} tokens, p90 "
                f"{tokens['p90']:,}, max {tokens['max']:,}; {tokens['over']:,} rows exceed "
                f"{tokens['max_seq_len']:,} tokens.", ""]

    out += ["## Source", ""]
    originals = [o for st in chain for o in st["originals"]]
    for label, entries in (("input of this export", inputs), ("original inputs", originals)):
        if entries:
            out.append(f"{label.capitalize()}:")
            out.append("")
            for e in entries[:MAX_FILES_LISTED]:
                fp = ", ".join(f"{k} {e[k]}" for k in ("kind", "bytes", "mtime",
                                                        "xxh3_head_tail", "split") if e.get(k))
                out.append(f"- `{e.get('path')}` ({fp})")
            if len(entries) > MAX_FILES_LISTED:
                rest = entries[MAX_FILES_LISTED:]
                out.append(f"- … and {len(rest):,} more files "
                           f"({sum(e.get('bytes') or 0 for e in rest):,} bytes)")
            out.append("")
    if sources:
        out += ["Rows per `source`:", ""]
        for src, n in sources.most_common(MAX_SOURCES_LISTED):
            out.append(f"- `{src}`: {n:,}")
        if len(sources) > MAX_SOURCES_LISTED:
            out.append(f"- … and {len(sources) - MAX_SOURCES_LISTED} more")
        out.append("")

    out += ["## Selection", ""]
    if chain:
        for st in chain:
            c = st["counts"]
            moved = (f"{c.get('rows_in', '?'):,} → {c.get('rows_out', '?'):,} rows"
                     if isinstance(c.get("rows_in"), int) and isinstance(c.get("rows_out"), int)
                     else "")
            dropped = ", ".join(f"{k} {v:,}" for k, v in (c.get("dropped") or {}).items()
                                if isinstance(v, int))
            out.append(f"- `curate {st['stage']}` ({st['folder']}): {_settings(st['config'])}"
                       + (f"; {moved}" if moved else "") + (f"; dropped {dropped}" if dropped
                                                             else ""))
            if st.get("command"):
                out.append(f"  - `{st['command']}`")
        out.append("")
    else:
        out += ["INPUT was not a curate stage folder: no selection history is recorded.", ""]

    out += ["## License", "",
            "This dataset inherits the licenses of the source traces"
            + (": " + ", ".join(f"`{s}`" for s, _ in sources.most_common(MAX_SOURCES_LISTED))
               if sources else "") + ". Check each source's license before redistributing it.",
            ""]
    return "\n".join(out)
