"""The score stage: traces → per-step rewards, trajectory reward and a selection score.

Any registered scorer (``curate.registry``: step-prm, seq-prm, signals …) on any engine that
offers what it needs. INPUT is read as `curate read` reads it, one chunk per ``--chunk-rows``
traces; each chunk is scored and committed (``ChunkedOutput``), so a killed run, rerun with the
same command, continues and ends with exactly the rows of an uninterrupted run. A completed
output of the same model and settings lends its rewards by trace content: only new traces
reach the model. ``--rescore`` recomputes ``score`` from stored rewards with another alpha /
aggregation, without a model; ``--dry-run`` tokenizes only and estimates the GPU time.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ..dropped import rows_of
from ..errors import InputError
from ..io.sources import fingerprint
from ..options import StageOptions, one_of, option
from ..read.traces import ReadOptions
from ..stage import Chunk, MapStage, StageContext
from .aggregate import AGGS
from .engine import CountingEngine, EngineOptions
from .loading import Loaded, load_scorer
from .multi import parse_devices
from .result import SCORE_COLUMNS, score_of

ENGINES_HELP = "auto, hf (transformers) or vllm."
# Throughput assumed by --dry-run when none is given: a 7B PRM in bf16 on one H100 at about
# half its peak (prefill only). An estimate from the FLOPs, not a measurement of this project.
ASSUMED_TOKENS_PER_S = 30_000
# Decode throughput of a 7B verifier batched on vLLM on one H100 (many chains at once): an
# order-of-magnitude estimate, not a measurement of this project.
ASSUMED_DECODE_TOKENS_PER_S = 2_500


@dataclass
class ScoreOptions(StageOptions):
    model: str | None = option(help="Reward model: a local checkpoint folder or a hub id.")
    scorer: str = option("auto", help="auto (signals without --model, else from the "
                         "checkpoint), signals (offline, no model), step-prm (separator head, "
                         "e.g. ReasonFlux-PRM-7B), seq-prm (sequence head, e.g. "
                         "ReasonFlux-PRM-1.5B), thinkprm (a generative verifier that writes a "
                         "critique, e.g. launch/ThinkPRM-1.5B; never chosen by auto).")
    encoder: str = option("minilm-static", help="Sentence encoder of the signals scorer: "
                          "minilm-static (static embeddings distilled once from "
                          "all-MiniLM-L6-v2, fast on CPU), minilm (the full model), none "
                          "(answer and hygiene signals only), or a sentence-transformers id or "
                          "path.")
    engine: str = option("auto", help=ENGINES_HELP)
    alpha: float = option(1.0, help="Weight of the trajectory reward in the score; 0 skips the "
                          "trajectory pass (about half the compute).")
    agg: str = option("mean", help="Step part of the score: mean (Eq. 11), min "
                      "(Math-Shepherd), last, prod.")
    system: str | None = option(help="System prompt of the step-PRM input (default: the model "
                                "card's).")
    rescore: bool = option(False, help="Recompute score from the rewards stored in a scored "
                           "INPUT with another --alpha / --agg; loads no model.")
    device: str = option("auto", help="auto, cpu, cuda, cuda:1 …")
    devices: str | None = option(help="One engine per GPU on this machine, e.g. 0,1,2,3 (data "
                                 "parallel: every batch is split across them by tokens).")
    dtype: str = option("auto", help="auto (bfloat16 on GPU, float32 on CPU), float32, "
                        "bfloat16, float16.")
    batch_tokens: int = option(16384, help="Token budget of one padded batch (hf engine).")
    max_model_len: int | None = option(help="Context limit (default: the model's "
                                       "max_position_embeddings).")
    gpu_memory_utilization: float | None = option(
        help="Share of GPU memory vLLM may take for weights and KV cache (vllm engine; default: "
             "vLLM's own, 0.2 on CPU).")
    tensor_parallel_size: int = option(1, help="GPUs to split the model across (vllm engine).")
    long: str = option("drop", help="Traces longer than the context: drop (to _dropped/ with "
                       "their token count) or window (steps scored in consecutive windows that "
                       "fit, each prefixed by the question and as many earlier steps as fit; "
                       "the trajectory pass takes the longest tail that fits).")
    verify_max_tokens: int = option(8192, help="thinkprm: tokens a verification chain may "
                                    "generate, rounds included (the repository's 8192); "
                                    "prompt + this must fit the context.")
    verify_k: int = option(1, help="thinkprm: parallel chains per trace; the score is the mean "
                           "of their P(yes), each chain's kept in chain_scores.")
    verify_rounds: int = option(1, help="thinkprm: sequential rounds per chain; each next round "
                                "opens with one of the repository's trigger phrases (\"Let me "
                                "double check\" …) and continues within the same budget.")
    verify_temperature: float | None = option(
        help="thinkprm: sampling temperature of the chains (default: 0, greedy, with one "
             "chain; 0.4, top-p 0.95, with --verify-k > 1).")
    verify_part: str = option("response", help="thinkprm: which steps are verified: response "
                              "(default: the released verifiers were trained on short "
                              "step-by-step solutions, not on long thinking), trajectory, or "
                              "both.")
    seed: int = option(0, help="Seed of sampled generation (thinkprm at temperature > 0).")
    chunk_rows: int = option(1024, help="Traces per committed chunk (the unit a rerun resumes "
                             "from).")
    revision: str | None = option(help="Hub revision of --model.")
    trust_remote_code: bool = option(False, help="Allow the checkpoint's own code for its "
                                     "tokenizer (opt-in; the model body curate knows is always "
                                     "loaded without it).")
    limit: int | None = option(help="Score only the first N input rows.")
    assume_tokens_per_s: float = option(ASSUMED_TOKENS_PER_S, help="Throughput for the "
                                        "--dry-run estimate (default: a 7B PRM on one H100, "
                                        "estimated).")
    assume_decode_tokens_per_s: float = option(
        ASSUMED_DECODE_TOKENS_PER_S, help="Generation throughput for the --dry-run estimate "
        "of a generative verifier (default: a 7B model batched on one H100, estimated).")

    def __post_init__(self):
        from ..registry import engine_names, scorer_names

        if self.alpha < 0 or self.alpha != self.alpha:
            raise InputError(f"--alpha {self.alpha}: must be >= 0 (the weight of the "
                             "trajectory reward)")
        one_of("--agg", self.agg, AGGS)
        one_of("--engine", self.engine, ("auto", *engine_names()))
        one_of("--scorer", self.scorer, ("auto", *scorer_names()))
        one_of("--long", self.long, ("drop", "window"))
        for name in ("batch_tokens", "chunk_rows"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be "
                                 "at least 1")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise InputError(f"--gpu-memory-utilization {self.gpu_memory_utilization}: expected "
                             "a fraction in (0, 1]")
        if self.tensor_parallel_size < 1:
            raise InputError(f"--tensor-parallel-size {self.tensor_parallel_size}: must be at "
                             "least 1")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit {self.limit}: must be at least 1")
        if self.scorer == "signals" and self.model is not None:
            raise InputError("--scorer signals takes no --model (it runs without a reward "
                             "model; --encoder picks its sentence encoder)")
        if self.scorer not in ("auto", "signals") and self.model is None:
            raise InputError(f"--scorer {self.scorer} needs --model (a checkpoint folder or "
                             "hub id)")
        one_of("--verify-part", self.verify_part, ("response", "trajectory", "both"))
        for name in ("verify_max_tokens", "verify_k", "verify_rounds"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be "
                                 "at least 1")
        if self.verify_temperature is not None and not 0 <= self.verify_temperature <= 10:
            raise InputError(f"--verify-temperature {self.verify_temperature}: expected a "
                             "temperature in [0, 10]")
        if self.verify_k > 1 and self.verify_temperature == 0:
            raise InputError(f"--verify-k {self.verify_k} with --verify-temperature 0: greedy "
                             "chains are all the same; sample them (temperature > 0)")
        self.device_list = parse_devices(self.devices)  # fails before any model is loaded
        if self.max_model_len is not None and self.max_model_len < 8:
            raise InputError(f"--max-model-len {self.max_model_len}: too small")

    def engine_options(self) -> EngineOptions:
        """The options of the engine (how the model runs), apart from the scorer's."""
        return EngineOptions(device=self.device, dtype=self.dtype,
                             batch_tokens=self.batch_tokens, max_model_len=self.max_model_len,
                             gpu_memory_utilization=self.gpu_memory_utilization,
                             tensor_parallel_size=self.tensor_parallel_size,
                             trust_remote_code=self.trust_remote_code, seed=self.seed)


@dataclass
class _State:
    loaded: Loaded | None
    cache: object | None
    load_seconds: float = 0.0


class ScoreStage(MapStage):
    name = "score"
    progress = "scoring"
    Options = ScoreOptions
    provides_score = True
    resumable = True
    help = ("Score every step with a process reward model, or offline on CPU with the signals "
            "scorer.")
    doc = """Score every trace with a process reward model: a reward per thinking step (`step_rewards`) and per response step (`response_step_rewards`), a trajectory reward, and the selection score of ReasonFlux-PRM Eq. 11: score = agg(step rewards) + alpha × trajectory_reward.

Without --model, the offline [bold]signals[/bold] scorer runs on CPU: the answer checked against reference_answer by math-verify (answer_correct), step↔response alignment and step coherence from sentence embeddings (alignment, coherence; step rewards), and hygiene (ends_cleanly, has_answer, repetition, length_tokens), one column each; score = 0.6 × answer + 0.4 × quality (see docs/DESIGN.md).

[bold]Examples[/bold]

  curate score out/read -o out/scored                      # signals scorer, offline, CPU
  curate score out/read -o out/scored --model Gen-Verse/ReasonFlux-PRM-7B
  curate score out/read -o out/scored --model ./tiny-prm --alpha 0 --agg min
  curate score out/scored -o out/rescored --rescore --alpha 0.5   # no model needed
  curate score out/read -o out/verified --scorer thinkprm --model launch/ThinkPRM-1.5B --verify-k 4

With --scorer thinkprm a generative verifier writes a critique of every step (step_verdicts, predicted_first_error, critique) and score is its P(yes) to "Is the solution correct?", averaged over --verify-k chains.

Traces longer than the model's context are never truncated: they go to _dropped/ as too_long with their token count. A killed run, rerun with the same command, continues from its last committed chunk."""  # noqa: E501

    def chunked(self, opts: ScoreOptions) -> bool:
        return not opts.rescore

    def read_options(self, opts: ScoreOptions) -> ReadOptions:
        if opts.rescore:
            return ReadOptions()
        return ReadOptions(batch_rows=opts.chunk_rows, limit=opts.limit)

    # -- scoring -------------------------------------------------------------------------------
    def open(self, ctx: StageContext, opts: ScoreOptions) -> _State:
        if opts.rescore:
            return _State(None, None)
        t0 = time.time()
        loaded = load_scorer(opts, ctx.reporter)
        # The first signals run distils its encoder (about 35 s on 2 CPUs, then cached):
        # timed apart, so that the report does not read it as slow scoring.
        load_seconds = time.time() - t0
        ctx.timings["scorer_load"] = load_seconds
        cache = None
        if getattr(loaded.scorer, "reusable", False) and ctx.out is not None:
            from .cache import RewardCache

            cache = RewardCache.load(Path(ctx.out), self._score_key(loaded),
                                     tuple(loaded.scorer.reward_columns))
        return _State(loaded, cache, load_seconds)

    @staticmethod
    def _score_key(loaded: Loaded) -> dict:
        """What reused rewards must share: the scorer's identity and reward settings (not
        chunking, limits, alpha's value or agg: score is recomputed from the rewards)."""
        return {"stage": "score", **loaded.scorer.key()}

    def resume_key(self, ctx: StageContext, opts: ScoreOptions, state: _State) -> dict:
        return {**self._score_key(state.loaded), "alpha": opts.alpha, "agg": opts.agg,
                "dtype": opts.dtype, "chunk_rows": opts.chunk_rows, "limit": opts.limit,
                "inputs": [fingerprint(s) for s in ctx.sources]}

    def process(self, batch, opts: ScoreOptions, state: _State) -> Chunk:
        if opts.rescore:
            return Chunk(self._rescore(batch, opts))
        table = batch.table
        if not table.num_rows:
            return Chunk(table)
        loaded = state.loaded
        if state.cache is not None:
            cols = state.cache.score(table, loaded.scorer, loaded.engine)
        else:
            cols = loaded.scorer.score(table, loaded.engine)
        kept = cols.kept(table.num_rows)
        take = pa.array(kept, pa.int64())
        out = table.take(take)
        for name, arr in cols.columns.items():
            out = _set(out, name, arr.take(take))
        out = _set(out, "scorer", pa.array([loaded.scorer.name] * len(kept), pa.string()))
        dropped = None
        if cols.drops:
            rows = sorted(cols.drops)
            dropped = rows_of(table, rows, [cols.drops[i][0] for i in rows],
                              [cols.drops[i][1] for i in rows], batch.label, batch.positions)
        windows = out.column("windows").to_pylist() if "windows" in out.column_names else []
        stats = {"windowed": sum(1 for w in windows if w and w > 1)}
        stats.update(loaded.scorer.chunk_stats(out) if out.num_rows else {})
        return Chunk(out, dropped, stats)

    def summary(self, ctx: StageContext, opts: ScoreOptions, state: _State,
                totals: Counter) -> dict:
        stats = ctx.read_stats
        if opts.rescore:
            return {"rows_in": stats.rows_in, "rows_out": ctx.rows_written, "alpha": opts.alpha,
                    "agg": opts.agg, "rescored": True}
        loaded = state.loaded
        dest = ctx.dest
        drops, rows_out = ctx.dropped, ctx.rows_written
        if rows_out == 0:
            raise InputError(f"{', '.join(ctx.inputs)}: no trace could be scored (dropped: "
                             f"{dict(drops)}); nothing written")
        elapsed = max(time.time() - ctx.started, 1e-9)
        desc = loaded.scorer.describe()
        engine = loaded.engine
        eng = engine.stats.as_dict() if engine is not None and engine.stats.sequences else {}
        ctx.manifest["scorer"] = desc
        ctx.manifest["score_key"] = self._score_key(loaded)
        if loaded.ckpt is not None:
            ctx.manifest["model"] = loaded.ckpt.fingerprint()
        summary = {
            "rows_in": stats.rows_in, "rows_out": rows_out, "dropped": dict(drops),
            "model": desc.get("model"), "family": desc["family"], "scorer": desc["scorer"],
            "engine": loaded.engine_name, "device": loaded.device,
            "alpha": opts.alpha, "agg": opts.agg, "chunks": len(dest.chunks),
            "chunks_resumed": dest.resumed, "too_long": drops.get("too_long", 0),
            "windowed": int(totals.get("windowed", 0)),
            "reused": state.cache.hits if state.cache is not None else 0,
            "scorer_load_seconds": round(state.load_seconds, 3),
            "traces_per_s": round(stats.rows_in / elapsed, 2),
            **{k: v for k, v in desc.items() if k in ("encoder", "weights")},
            **({"engine_stats": eng} if eng else {}),
        }
        if loaded.ckpt is not None and opts.alpha == 0 and desc["family"] != "thinkprm":
            summary["note"] = "alpha 0: trajectory pass skipped (about half the compute)"
        if desc["family"] == "thinkprm":
            summary["verification"] = {k: int(totals.get(k, 0)) for k in (
                "verdicts_correct", "verdicts_incorrect", "verdict_count_mismatch",
                "predicted_error", "no_verdicts", "generated_tokens")}
            summary["verification"].update({k: desc[k] for k in (
                "verify_k", "verify_rounds", "verify_max_tokens", "verify_part",
                "temperature")})
            if desc["verdict_tokens"].get("fallback"):
                summary["note"] = desc["verdict_tokens"]["fallback"]
        return summary

    def close(self, state: _State) -> None:
        if state.loaded is not None and state.loaded.engine is not None:
            state.loaded.engine.close()

    # -- --rescore -----------------------------------------------------------------------------
    def _rescore(self, batch, opts: ScoreOptions) -> pa.Table:
        table = batch.table
        if "verifier_score" in table.column_names:
            raise InputError(f"{batch.label}: scored by a generative verifier (thinkprm), whose "
                             "score is its P(yes) with nothing to recompute without the model; "
                             "run `curate score` again to change its settings")
        lacking = [c for c in SCORE_COLUMNS if c not in table.column_names]
        if lacking:
            raise InputError(f"{batch.label}: not a scored folder (no column {lacking[0]}); "
                             "run `curate score` first")
        scorer = table.column("scorer")[0].as_py() if table.num_rows else None
        if scorer and scorer.startswith("signals"):
            raise InputError(f"{batch.label}: scored by the signals scorer, whose score is not "
                             "agg + alpha × trajectory reward; run `curate score` again instead "
                             "(it is cheap)")
        columns = {c: table.column(c) for c in ("step_rewards", "response_step_rewards",
                                                 "trajectory_reward")}
        if opts.alpha:
            traj = columns["trajectory_reward"].to_pylist()
            steps = columns["step_rewards"].to_pylist()
            resp = columns["response_step_rewards"].to_pylist()
            if any(t is None and (a or b) for t, a, b in zip(traj, steps, resp, strict=True)):
                raise InputError(f"{batch.label}: scored with --alpha 0 (no trajectory reward "
                                 "stored); rescore with --alpha 0 or score again")
        return _set(table, "score", score_of(columns, opts.alpha, opts.agg))

    # -- --dry-run -----------------------------------------------------------------------------
    def dry_run(self, ctx: StageContext, opts: ScoreOptions) -> dict:
        """Tokenize only: token counts, the too-long share and the GPU time it would take."""
        if opts.model is None:
            raise InputError("--dry-run needs --model (its tokenizer and context decide the "
                             "counts)")
        loaded = load_scorer(opts, ctx.reporter)
        counter = CountingEngine()
        drops: Counter = Counter()
        for batch in ctx.traces(ReadOptions(limit=opts.limit)):
            if batch.table.num_rows:
                cols = loaded.scorer.score(batch.table, counter)
                drops.update(reason for reason, _ in cols.drops.values())
        drops.update(ctx.dropped)
        n = ctx.read_stats.rows_in or 1
        tokens = counter.stats.tokens
        generated = counter.stats.generated  # the budget: an upper bound
        tps, dps = opts.assume_tokens_per_s, opts.assume_decode_tokens_per_s
        out = {"dry_run": True, "rows_in": ctx.read_stats.rows_in, "model": loaded.ckpt.model,
               "family": loaded.ckpt.family,
               "max_len": loaded.scorer.count_plan().get("max_len"), "alpha": opts.alpha,
               "sequences": counter.stats.sequences, "tokens": tokens,
               "too_long": drops.get("too_long", 0),
               "too_long_share": round(drops.get("too_long", 0) / n, 4),
               "dropped": dict(drops), "assumed_tokens_per_s": tps,
               "estimated_gpu_hours": round((tokens / tps + generated / dps) / 3600, 3)}
        if loaded.scorer.needs == "generate":
            out.update(generated_tokens_max=generated, assumed_decode_tokens_per_s=dps)
        return out


def _set(table: pa.Table, name: str, arr) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, arr)
    return table.append_column(name, arr)
