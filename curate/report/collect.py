"""Read a run's (or one stage's) manifests and scored data into a plain dict.

The dict is the single source for the terminal, HTML and ``--json`` views, so all three always
say the same thing. Counts come from each manifest's ``counts`` (the numbers the stage itself
committed); the _dropped/ parquet is read only when a manifest lists dropped parts but no
reasons, e.g. one written by an older curate. The score distribution is computed lazily with
polars over the scored stage's parts, reading only the columns it needs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl

from ..errors import InputError
from ..io.folder import DROPPED, is_curate_folder, read_manifest


def _flow() -> list[str]:
    """The registered stages, in flow order (a folder of a stage not registered sorts last)."""
    from ..registry import stage_names

    return stage_names()
BINS = 20
TOP_SOURCES = 5
EXAMPLES = 3
QUESTION_CHARS = 100


def collect(folder: str | Path, *, bins: int = BINS) -> dict:
    """The report of DIR as a JSON-ready dict. Raises InputError when DIR has no curate output."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"DIR '{folder}': no such folder")
    stages = [_stage(f) for f in _stage_folders(root)]
    if not stages:
        raise InputError(f"DIR '{folder}': no curate output here (expected a _manifest.json "
                         "written by a curate stage, in DIR or in its subfolders)")
    run = _run_state(root)
    order = (run or {}).get("order") or _flow()
    stages.sort(key=lambda s: (_flow_index(s["stage"], order), s["created"] or "", s["folder"]))
    scored = _score_source(stages)
    return {
        "dir": str(root),
        "run": run,
        "stages": stages,
        "funnel": _funnel(stages),
        "drop_reasons": _drop_totals(stages),
        "too_long": _too_long(stages, scored),
        "score": _score_report(scored, bins) if scored else None,
        "verification": _verification(scored) if scored else None,
    }


def _stage_folders(root: Path) -> list[Path]:
    """DIR itself when it is a stage folder, else its direct subfolders that are."""
    if is_curate_folder(root):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and is_curate_folder(p))


def _flow_index(stage: str, order) -> int:
    return order.index(stage) if stage in order else len(order)


def _run_state(root: Path) -> dict | None:
    """What `curate run` recorded in DIR/run.json: the stage order it ran (stages may be
    reordered) and the quick-SFT verdict of validate, which writes no folder of its own."""
    path = root / "run.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    stages = doc.get("stages") or {}
    order = [s for s in doc.get("order") or [] if isinstance(s, str)]
    v = (stages.get("validate") or {}).get("summary")
    validate = None
    if isinstance(v, dict):
        validate = {"ok": v.get("ok"), "student": v.get("student"),
                    "rows": (v.get("checks") or {}).get("rows"),
                    "faults": {k: n for k, n in ((v.get("checks") or {}).get("faults")
                                                 or {}).items() if n},
                    "train": {name: {k: t.get(k) for k in ("rows", "steps", "loss_start",
                                                           "loss_end", "heldout_loss", "nan")}
                              for name, t in (v.get("train") or {}).items()},
                    "selected_minus_random": (v.get("comparison") or {}).get(
                        "selected_minus_random"),
                    "heldout": v.get("heldout")}
    return {"order": order, "validate": validate}


def _stage(folder: Path) -> dict:
    m = read_manifest(folder)
    counts = m.get("counts") or {}
    summary = m.get("summary") or {}
    timings = m.get("timings") or {}
    rows_in = _int(counts.get("rows_in", summary.get("rows_in")))
    rows_out = _int(counts.get("rows_out", summary.get("rows_out")))
    dropped = {str(k): int(v) for k, v in (counts.get("dropped") or summary.get("dropped")
                                           or {}).items()}
    dropped_rows = sum(int(p.get("rows", 0)) for p in m.get("dropped_parts") or [])
    if not dropped and dropped_rows:
        dropped = _dropped_from_parquet(folder)
    seconds = timings.get("seconds", summary.get("seconds"))
    seconds = float(seconds) if isinstance(seconds, (int, float)) else None
    return {
        "stage": (m.get("curate") or {}).get("stage", "unknown"),
        "folder": str(folder),
        "command": m.get("command"),
        "created": m.get("created"),
        "rows_in": rows_in,
        "rows_out": rows_out,
        "dropped": dict(sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0]))),
        "seconds": seconds,
        "rows_per_s": round(rows_in / seconds, 1) if rows_in and seconds else None,
        "timings": {k: v for k, v in timings.items() if k != "seconds"},
        "parts": [str(p["file"]) for p in m.get("parts") or [] if "file" in p],
    }


def _int(v) -> int | None:
    return int(v) if isinstance(v, (int, float)) else None


def _dropped_from_parquet(folder: Path) -> dict[str, int]:
    files = sorted((folder / DROPPED).glob("part-*.parquet")) or \
        sorted((folder / "dropped").glob("part-*.parquet"))  # curate 0.1
    if not files:
        return {}
    df = (pl.concat([pl.scan_parquet(f).select("drop_reason") for f in files])
          .group_by("drop_reason").len().collect())
    return {str(r): int(n) for r, n in df.iter_rows()}


def _funnel(stages: list[dict]) -> dict:
    """Rows entering the first stage and leaving the last; every place the chain does not
    connect (rows in of a stage != rows out of the one before) is listed, since a report over
    folders from different runs would otherwise look like a funnel."""
    breaks = []
    for prev, cur in zip(stages, stages[1:], strict=False):
        if prev["rows_out"] != cur["rows_in"]:
            breaks.append({"after": prev["stage"], "before": cur["stage"],
                           "rows_out": prev["rows_out"], "rows_in": cur["rows_in"]})
    first, last = stages[0]["rows_in"], stages[-1]["rows_out"]
    return {"rows_in": first, "rows_out": last,
            "kept_share": round(last / first, 4) if first and last is not None else None,
            "connected": not breaks, "breaks": breaks}


def _drop_totals(stages: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in stages:
        for k, v in s["dropped"].items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def _files(stage: dict) -> list[Path]:
    folder = Path(stage["folder"])
    files = [folder / p for p in stage["parts"] if p.endswith(".parquet")]
    return [f for f in files if f.is_file()] or sorted(folder.glob("part-*.parquet"))


def _score_source(stages: list[dict]) -> dict | None:
    """The score stage; without one, the earliest stage whose data has a ``score`` column."""
    ordered = sorted(stages, key=lambda s: s["stage"] != "score")
    for s in ordered:
        files = _files(s)
        if files and all("score" in pl.read_parquet_schema(f) for f in files):
            return {"stage": s["stage"], "folder": s["folder"], "files": files}
    return None


def _scan(files: list[Path], wanted: tuple[str, ...]) -> tuple[pl.LazyFrame, set[str]]:
    """One lazy frame over the parts with the wanted columns that every part has."""
    have = set(wanted)
    for f in files:
        have &= set(pl.read_parquet_schema(f))
    cols = [c for c in wanted if c in have]
    lf = pl.concat([pl.scan_parquet(f).select(cols) for f in files], how="vertical_relaxed")
    return lf, have


def _too_long(stages: list[dict], scored: dict | None) -> dict:
    """Traces longer than the scorer's context (flagged or dropped) and rows the filter dropped
    for --max-tokens."""
    out = {"flagged_by_scorer": None,
           "dropped_by_scorer": sum(s["dropped"].get("too_long", 0) for s in stages
                                    if s["stage"] == "score"),
           "dropped_max_tokens": sum(s["dropped"].get("max_tokens", 0) for s in stages)}
    if scored:
        lf, have = _scan(scored["files"], ("too_long",))
        if "too_long" in have:
            out["flagged_by_scorer"] = int(lf.select(pl.col("too_long").sum()).collect().item()
                                           or 0)
    return out


def _verification(scored: dict) -> dict | None:
    """A generative verifier's verdicts (``curate.scoring.thinkprm``): how many steps it judged
    correct and incorrect, where traces' first errors fall, and the critiques that judged
    another number of steps than given. None for other scorers."""
    wanted = ("step_verdicts", "predicted_first_error", "verdict_count_mismatch",
              "generated_tokens")
    lf, have = _scan(scored["files"], wanted)
    if not set(wanted) <= have:
        return None
    row = lf.select(
        traces=pl.len(),
        correct=pl.col("step_verdicts").list.sum().sum(),
        judged=pl.col("step_verdicts").list.len().sum(),
        mismatch=pl.col("verdict_count_mismatch").sum(),
        no_verdicts=pl.col("predicted_first_error").is_null().sum(),
        all_correct=(pl.col("predicted_first_error") == -1).sum(),
        generated=pl.col("generated_tokens").sum()).collect().row(0, named=True)
    firsts = (lf.filter(pl.col("predicted_first_error") >= 0)
              .select(pl.col("predicted_first_error")).collect().to_series().to_list())
    at: dict[str, int] = {}
    for f in sorted(firsts):  # 1-based step numbers; 10 and later together
        key = f"step {f + 1}" if f < 9 else "step 10+"
        at[key] = at.get(key, 0) + 1
    traces = int(row["traces"])
    return {"traces": traces, "steps_correct": int(row["correct"] or 0),
            "steps_incorrect": int((row["judged"] or 0) - (row["correct"] or 0)),
            "traces_all_correct": int(row["all_correct"] or 0),
            "traces_with_error": len(firsts), "traces_without_verdicts":
            int(row["no_verdicts"] or 0), "verdict_count_mismatch": int(row["mismatch"] or 0),
            "first_error_at": at, "generated_tokens": int(row["generated"] or 0),
            "generated_per_trace": round((row["generated"] or 0) / traces, 1) if traces
            else None}


def _score_report(scored: dict, bins: int) -> dict:
    lf, have = _scan(scored["files"], ("id", "score", "source", "question", "step_rewards",
                                       "response_step_rewards", "step_verdicts"))
    # NaN and ±inf are no score (curate.stats): counted with the nulls, never binned or averaged
    score = pl.col("score").cast(pl.Float64)
    lf = lf.with_columns(pl.when(score.is_finite()).then(score).otherwise(None).alias("score"))
    stats = lf.select(
        n=pl.len(), nulls=pl.col("score").null_count(), min=pl.col("score").min(),
        max=pl.col("score").max(), mean=pl.col("score").mean(),
        median=pl.col("score").median()).collect().row(0, named=True)
    lo, hi = stats["min"], stats["max"]
    report = {"stage": scored["stage"], "folder": scored["folder"],
              "n": stats["n"], "nulls": stats["nulls"],
              **{k: _round(stats[k]) for k in ("min", "max", "mean", "median")},
              "edges": [], "counts": [], "per_source": {}, "sources_total": 0,
              "top": [], "bottom": []}
    if lo is None or not math.isfinite(lo) or not math.isfinite(hi):
        return report
    nb = bins if hi > lo else 1
    width = (hi - lo) / nb if hi > lo else 1.0
    report["edges"] = [_round(lo + i * width) for i in range(nb)] + [_round(hi)]
    scored_rows = lf.filter(pl.col("score").is_not_null())
    binned = scored_rows.with_columns(
        bin=((pl.col("score") - lo) / width).floor().cast(pl.Int64).clip(0, nb - 1))
    report["counts"] = _hist(binned.group_by("bin").len().collect(), nb)
    if "source" in have:
        by_src = (scored_rows.group_by("source")
                  .agg(n=pl.len(), mean=pl.col("score").mean())
                  .sort(["n", "source"], descending=[True, False], nulls_last=True).collect())
        report["sources_total"] = by_src.height
        top = by_src.head(TOP_SOURCES)
        per = (binned.filter(pl.col("source").is_in(top["source"].drop_nulls().to_list()))
               .group_by(["source", "bin"]).len().collect())
        for src, n, mean in top.iter_rows():
            if src is None:
                continue
            report["per_source"][src] = {
                "n": int(n), "mean": _round(mean),
                "counts": _hist(per.filter(pl.col("source") == src), nb)}
    report["top"] = _examples(scored_rows, have, descending=True)
    report["bottom"] = _examples(scored_rows, have, descending=False)
    return report


def _hist(df: pl.DataFrame, nb: int) -> list[int]:
    counts = [0] * nb
    for b, n in zip(df["bin"].to_list(), df["len"].to_list(), strict=True):
        counts[int(b)] += int(n)
    return counts


def _examples(lf: pl.LazyFrame, have: set[str], *, descending: bool) -> list[dict]:
    """Top (or bottom) rows by score; ties by id ascending either way, so the pick is stable."""
    order = ["score"] + (["id"] if "id" in have else [])
    cols = [c for c in ("id", "source", "question", "score", "step_rewards",
                        "response_step_rewards", "step_verdicts") if c in have]
    rows = lf.sort(order, descending=[descending] + [False] * (len(order) - 1)) \
        .head(EXAMPLES).select(cols).collect().to_dicts()
    out = []
    for r in rows:
        # a verifier's verdicts (1 / 0) stand where a PRM's step rewards would
        steps = r.get("step_rewards") or r.get("response_step_rewards") or \
            r.get("step_verdicts") or []
        q = " ".join((r.get("question") or "").split())
        out.append({"id": r.get("id"), "source": r.get("source"),
                    "question": q if len(q) <= QUESTION_CHARS else q[:QUESTION_CHARS - 1] + "…",
                    "score": _round(r["score"]),
                    "step_rewards": [_round(x) for x in steps]})
    return out


def _round(v, nd: int = 4):
    return round(float(v), nd) if v is not None and math.isfinite(float(v)) else None
