"""Generative verification (ThinkPRM, arXiv 2504.16828): a long-CoT model writes a critique of
every step, and the probability it gives "Yes" to "Is the solution correct?" is the score.

Per trace, on curate's segmented steps (``--verify-part``: the response, the thinking, or
both), the prompt of ``curate.scoring.verification`` goes to an engine with the ``generate``
capability: ``--verify-k`` chains, each of ``--verify-rounds`` sequential rounds sharing one
budget of ``--verify-max-tokens`` generated tokens; then every chain's verdict is forced and
read as P(yes). Columns:

* ``verifier_score``: the mean of the chains' P(yes); ``score`` is the same value, so filter,
  dedup, export, report and eval work unchanged;
* ``chain_scores``: each chain's P(yes);
* ``step_verdicts``: 1 / 0 per verified step, from the critique's ``\\boxed{…}`` (with several
  chains: the per-step majority of the chains that judged every step, a tie counting as
  incorrect; when none did, the first chain's verdicts as written);
* ``predicted_first_error``: the first step judged incorrect, 0-based over
  ``trajectory_steps + response_steps`` (curate's step-label convention, as in
  ``first_error_step``), -1 when every verdict is correct, null without verdicts. It is not
  named ``first_error_step``: that is the label column of labelled data, which scoring must
  never overwrite;
* ``verdict_count_mismatch``: the critique judged another number of steps than it was given (a
  known behaviour of the released models): the row is kept and counted;
* ``critique`` (the first chain's text, rounds joined by their trigger phrases), ``critiques``
  (every chain's, with ``--verify-k`` > 1), ``generated_tokens``, ``n_tokens`` (prompt).

Traces whose prompt plus budget do not fit the context follow ``--long``: dropped as
``too_long``, or verified in windows of steps (``curate.scoring.windows``), each window's
steps numbered from 1 with the instruction's "If the solution is incomplete, only verify the
provided steps"; a chain's score is then its lowest window's P(yes).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from .. import schema as S
from ..errors import InputError, RowError
from ..steps import segment_trace
from . import verification as V
from .checkpoint import SEQ_HEAD_FILE, Checkpoint
from .generation import GenParams, cut_at_stop
from .scorer import ScoreColumns, Scorer, ScorerFamily
from .step_prm import load_tokenizer
from .windows import plan_windows

PARTS = ("response", "trajectory", "both")
# The repository's parallel-scaling example samples its chains at 0.4; one chain is greedy.
PARALLEL_TEMPERATURE = 0.4
TOP_P = 0.95
VERIFIER_COLUMNS = ("verifier_score", "chain_scores", "step_verdicts", "predicted_first_error",
                    "verdict_count_mismatch", "critique", "generated_tokens", "n_tokens",
                    "too_long", "windows")


@dataclass
class _Job:
    """One verification prompt: a row's steps, or one window of them."""

    row: int
    prompt: list[int]
    first: int  # index, among the shown steps, of the first step whose verdict is read
    count: int  # verdicts read
    shown: int  # steps shown
    label: str = ""  # "steps a–b" for a window


@dataclass
class _Chain:
    rounds: list[str] = field(default_factory=list)
    used: int = 0
    p_yes: float = float("nan")

    def text(self) -> str:
        out = self.rounds[0] if self.rounds else ""
        for r, part in enumerate(self.rounds[1:], 1):
            out += V.trigger(r) + part
        return out


@dataclass
class ThinkPRMScorer(Scorer):
    family = "thinkprm"
    needs = "generate"
    reusable = True

    ckpt: Checkpoint
    tokenizer: object
    max_tokens: int = 8192
    k: int = 1
    rounds: int = 1
    temperature: float | None = None
    part: str = "response"
    max_len: int | None = None
    long: str = "drop"
    seed: int = 0
    decision_temperature: float = 1.0

    def __post_init__(self):
        tok = self.tokenizer
        if tok.chat_template is None:
            raise InputError(f"--model {self.ckpt.model}: its tokenizer has no chat template; "
                             "the verifier's prompt is a chat turn with a generation prompt")
        self.max_len = self.max_len or self.ckpt.max_len
        if self.temperature is None:
            self.temperature = 0.0 if self.k == 1 else PARALLEL_TEMPERATURE
        self.verdict_tokens = self._verdict_tokens()
        self.yes_id, self.no_id = (self.verdict_tokens["yes_id"], self.verdict_tokens["no_id"])
        self.predecision = self._encode(V.PREDECISION)
        trig = max(len(self._encode(t)) for t in V.TRIGGERS)
        # what a chain may add to its prompt: the budget, the trigger phrases, the verdict
        self.reserve = self.max_tokens + (self.rounds - 1) * trig + len(self.predecision) + 1
        if self.reserve >= self.max_len:
            raise InputError(f"--verify-max-tokens {self.max_tokens}: with the verdict it "
                             f"needs {self.reserve} tokens, and the context is {self.max_len} "
                             "(--max-model-len); lower --verify-max-tokens")
        self.name = self.ckpt.label

    def _verdict_tokens(self) -> dict:
        """The ids of " Yes" and " No"; the first token of each when either is not one token,
        said in the manifest (``describe``)."""
        out: dict = {"yes": V.YES, "no": V.NO}
        notes = []
        for word, key in ((V.YES, "yes_id"), (V.NO, "no_id")):
            ids = self._encode(word)
            if not ids:
                raise InputError(f"--model {self.ckpt.model}: its tokenizer encodes "
                                 f"{word!r} to nothing; the verdict cannot be read")
            if len(ids) > 1:
                notes.append(f"{word!r} is {len(ids)} tokens; its first token ({ids[0]}) "
                             "is read")
            out[key] = ids[0]
        if out["yes_id"] == out["no_id"]:
            raise InputError(f"--model {self.ckpt.model}: {V.YES!r} and {V.NO!r} start with "
                             "the same token; the verdict cannot tell them apart")
        if notes:
            out["fallback"] = "; ".join(notes)
        return out

    # -- the contract -------------------------------------------------------------------------
    def key(self) -> dict:
        return {"family": self.family, "model": self.ckpt.key(), "prompt": V.PROMPT_VERSION,
                "verify_max_tokens": self.max_tokens, "k": self.k, "rounds": self.rounds,
                "temperature": self.temperature, "top_p": None if not self.temperature
                else TOP_P, "seed": self.seed if self.temperature else None,
                "part": self.part, "max_len": self.max_len, "long": self.long,
                "decision_temperature": self.decision_temperature}

    def describe(self) -> dict:
        return {"family": self.family, "model": self.ckpt.model, "scorer": self.name,
                "verify_max_tokens": self.max_tokens, "verify_k": self.k,
                "verify_rounds": self.rounds, "temperature": self.temperature,
                "verify_part": self.part, "verdict_tokens": self.verdict_tokens}

    def count_plan(self) -> dict:
        return {"max_len": self.max_len}

    def selection(self, columns: dict[str, pa.Array]) -> pa.Array:
        return columns["verifier_score"]

    def chunk_stats(self, table: pa.Table) -> dict[str, int]:
        """Counts the summary and report add up: verdicts, mismatches, generated tokens."""
        verdicts = table.column("step_verdicts").to_pylist()
        first = table.column("predicted_first_error").to_pylist()
        return {
            "verdicts_correct": sum(sum(v) for v in verdicts if v),
            "verdicts_incorrect": sum(len(v) - sum(v) for v in verdicts if v),
            "verdict_count_mismatch": sum(bool(x) for x in
                                          table.column("verdict_count_mismatch").to_pylist()),
            "predicted_error": sum(1 for f in first if f is not None and f >= 0),
            "no_verdicts": sum(1 for f in first if f is None),
            "generated_tokens": sum(table.column("generated_tokens").to_pylist()),
        }

    # -- scoring ------------------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _steps(self, t, r, ts, rs) -> tuple[list[str], int]:
        """The steps to verify and the index of the first one among all the trace's steps."""
        t_steps, r_steps = segment_trace(t or "", r, ts, rs)
        if self.part == "response":
            return r_steps, len(t_steps)
        if self.part == "trajectory":
            return t_steps, 0
        return t_steps + r_steps, 0

    def _prompt(self, question: str, steps: list[str]) -> list[int]:
        return self._encode(V.prompt_text(self.tokenizer, question, steps))

    def score(self, table: pa.Table, engine) -> ScoreColumns:
        n = table.num_rows
        col = {c: (table.column(c).to_pylist() if c in table.column_names else [None] * n)
               for c in (S.QUESTION, S.TRAJECTORY, S.RESPONSE, S.TRAJECTORY_STEPS,
                         S.RESPONSE_STEPS)}
        drops: dict[int, tuple[str, str]] = {}
        jobs: list[_Job] = []
        offsets, n_tokens, too_long, windows = [0] * n, [0] * n, [False] * n, [1] * n
        limit = self.max_len - self.reserve
        for i in range(n):
            steps, offsets[i] = self._steps(col[S.TRAJECTORY][i], col[S.RESPONSE][i],
                                            col[S.TRAJECTORY_STEPS][i], col[S.RESPONSE_STEPS][i])
            if not steps:
                drops[i] = ("no_steps", f"no {self.part} step to verify (--verify-part "
                                        f"{self.part})")
                continue
            q = col[S.QUESTION][i]
            prompt = self._prompt(q, steps)
            n_tokens[i] = len(prompt)
            if len(prompt) <= limit:
                jobs.append(_Job(i, prompt, 0, len(steps), len(steps)))
                continue
            too_long[i] = True
            if self.long != "window":
                drops[i] = ("too_long", f"{len(prompt)} prompt tokens + {self.reserve} for the "
                                        f"critique and verdict > {self.max_len}")
                continue
            try:
                parts = self._windows(i, q, steps, limit)
            except RowError as e:
                drops[i] = (e.reason, e.value)
                continue
            windows[i] = len(parts)
            jobs += parts
        chains = self._verify(jobs, engine)
        return self._columns(n, jobs, chains, drops, offsets, n_tokens, too_long, windows)

    def _windows(self, row: int, question: str, steps: list[str], limit: int) -> list[_Job]:
        base = len(self._prompt(question, []))
        cost = [len(self._encode(f"Step {k}: {s.strip()}\n")) for k, s in enumerate(steps, 1)]

        def build(begin: int, end: int) -> tuple[int, list[int]]:
            ids = self._prompt(question, steps[begin:end])
            return len(ids), ids

        return [_Job(row, ids, start - begin, end - start, end - begin,
                     f"steps {start + 1}–{end}")
                for begin, start, end, ids in plan_windows(cost, limit - base, build, limit)]

    def _cut(self, ids: list[int]) -> str:
        return cut_at_stop(self._decode(ids), V.STOPS)[0]

    def _verify(self, jobs: list[_Job], engine) -> list[list[_Chain]]:
        """Generate every job's chains, round by round, then force their verdicts."""
        chains = [[_Chain() for _ in range(self.k)] for _ in jobs]
        if not jobs:
            return chains
        first = GenParams(max_tokens=self.max_tokens, n=self.k, temperature=self.temperature,
                          top_p=TOP_P if self.temperature else 1.0, stop=V.STOPS,
                          seed=self.seed)
        for j, gens in enumerate(engine.generate([job.prompt for job in jobs], first)):
            for ch, g in zip(chains[j], gens, strict=True):
                ch.rounds.append(self._cut(g.token_ids))
                ch.used = g.generated
        for r in range(1, self.rounds):  # sequential rounds: the budget left, shared
            todo = [(j, c) for j in range(len(jobs)) for c in range(self.k)
                    if chains[j][c].used < self.max_tokens]
            if not todo:
                break
            prompts = [jobs[j].prompt + self._encode(chains[j][c].text() + V.trigger(r))
                       for j, c in todo]
            room = max(self.max_tokens - chains[j][c].used for j, c in todo)
            params = replace(first, n=1, max_tokens=room, seed=self.seed + r)
            for (j, c), gens in zip(todo, engine.generate(prompts, params), strict=True):
                ch = chains[j][c]
                g = gens[0]
                ids = g.token_ids[: self.max_tokens - ch.used]
                ch.rounds.append(self._cut(ids))
                ch.used += min(g.generated, self.max_tokens - ch.used)
        flat = [(j, c) for j in range(len(jobs)) for c in range(self.k)]
        seqs = [self._verdict_input(jobs[j].prompt, chains[j][c].text()) for j, c in flat]
        lps = np.asarray(engine.choice_logprobs(seqs, [self.yes_id, self.no_id]),
                         dtype=float).reshape(len(flat), 2)
        for (j, c), (a, b) in zip(flat, lps, strict=True):
            chains[j][c].p_yes = V.p_yes(float(a), float(b), self.decision_temperature)
        return chains

    def _verdict_input(self, prompt: list[int], critique: str) -> list[int]:
        """prompt + critique + "Is the solution correct?": the verdict is the next token. The
        critique is re-encoded from its text, as every engine sees it; in the rare case that
        re-encoding grew it past the context, its end gives way, never the question."""
        ids = prompt + self._encode(critique + V.PREDECISION)
        if len(ids) <= self.max_len:
            return ids
        room = self.max_len - len(prompt) - len(self.predecision)
        return prompt + self._encode(critique)[:room] + self.predecision

    def _job_verdicts(self, job: _Job, chains: list[_Chain]) -> tuple[list[int], bool]:
        """The verdicts read for a job's steps, and whether they are the count it was given."""
        lists = [V.last_verdicts(ch.rounds) for ch in chains]
        full = [v for v in lists if len(v) == job.shown]
        if full:  # per-step majority; a tie counts as incorrect
            votes = [1 if 2 * sum(col) > len(full) else 0 for col in zip(*full, strict=True)]
            return votes[job.first : job.first + job.count], False
        if job.first == 0 and job.count == job.shown:  # the whole solution: as written
            return lists[0], True
        return lists[0][job.first : job.first + job.count], True

    def _columns(self, n, jobs, chains, drops, offsets, n_tokens, too_long,
                 windows) -> ScoreColumns:
        by_row: dict[int, list[int]] = {}
        for j, job in enumerate(jobs):
            by_row.setdefault(job.row, []).append(j)
        score, chain_scores, verdicts = [None] * n, [None] * n, [None] * n
        first, mismatch, critique = [None] * n, [None] * n, [None] * n
        critiques, generated = [None] * n, [None] * n
        for i, js in by_row.items():
            # a chain's score over windows: its lowest; the trace's: the chains' mean
            per_chain = [float(np.min([chains[j][c].p_yes for j in js])) for c in range(self.k)]
            chain_scores[i] = per_chain
            score[i] = float(np.mean(per_chain))
            got: list[int] = []
            off = False
            for j in js:
                v, m = self._job_verdicts(jobs[j], chains[j])
                got += v
                off |= m
            verdicts[i], mismatch[i] = got, off
            first[i] = None if not got else offsets[i] + got.index(0) if 0 in got else -1
            texts = [self._text(jobs, chains, js, c) for c in range(self.k)]
            critique[i] = texts[0]
            critiques[i] = texts
            generated[i] = sum(chains[j][c].used for j in js for c in range(self.k))
        cols = {
            "verifier_score": pa.array(score, pa.float32()),
            "chain_scores": pa.array(chain_scores, pa.list_(pa.float32())),
            "step_verdicts": pa.array(verdicts, pa.list_(pa.int8())),
            "predicted_first_error": pa.array(first, pa.int32()),
            "verdict_count_mismatch": pa.array(mismatch, pa.bool_()),
            "critique": pa.array(critique, pa.string()),
            "generated_tokens": pa.array(generated, pa.int32()),
            "n_tokens": pa.array(n_tokens, pa.int32()),
            "too_long": pa.array(too_long, pa.bool_()),
            "windows": pa.array(windows, pa.int32()),
        }
        if self.k > 1:
            cols["critiques"] = pa.array(critiques, pa.list_(pa.string()))
        cols["score"] = self.selection(cols)
        return ScoreColumns(cols, drops)

    @staticmethod
    def _text(jobs: list[_Job], chains: list[list[_Chain]], js: list[int], c: int) -> str:
        if len(js) == 1:
            return chains[js[0]][c].text()
        return "\n\n".join(f"[{jobs[j].label}]\n{chains[j][c].text()}" for j in js)

    @property
    def reward_columns(self) -> tuple[str, ...]:
        return VERIFIER_COLUMNS + (("critiques",) if self.k > 1 else ())


class ThinkPRMFamily(ScorerFamily):
    """Generative verifiers of the ThinkPRM kind: a causal LM with its language-model head,
    taken only when asked for (``--scorer thinkprm``): ``--scorer auto`` never mistakes a
    causal LM for a reward model."""

    name = "thinkprm"

    @classmethod
    def detect(cls, ckpt: Checkpoint) -> bool:
        return False  # never by itself: see the class text

    @classmethod
    def check(cls, ckpt: Checkpoint) -> dict:
        archs = ckpt.architectures
        if any(a.endswith("ForProcessRewardModel") for a in archs):
            raise InputError(f"--scorer thinkprm: --model {ckpt.model} is a step PRM "
                             f"({', '.join(archs)}, a reward head, no language-model head); "
                             "use --scorer step-prm")
        if (ckpt.path / SEQ_HEAD_FILE).is_file():
            raise InputError(f"--scorer thinkprm: --model {ckpt.model} is a sequence PRM (it "
                             f"ships {SEQ_HEAD_FILE}); its language-model head was not trained "
                             "to verify: use --scorer seq-prm")
        has_head = "lm_head.weight" in ckpt.shapes or (
            ckpt.config.get("tie_word_embeddings") and any(
                k.endswith("embed_tokens.weight") for k in ckpt.shapes))
        if not any(a.endswith("ForCausalLM") for a in archs) or (ckpt.shapes and not has_head):
            raise InputError(f"--scorer thinkprm: --model {ckpt.model} is not a causal "
                             f"language model with its head (architecture "
                             f"{', '.join(archs) or 'unknown'}); a generative verifier writes "
                             "its critique with one")
        return {}

    @classmethod
    def build(cls, opts, ckpt: Checkpoint, reporter=None) -> ThinkPRMScorer:
        tok = load_tokenizer(ckpt, opts.trust_remote_code)
        scorer = ThinkPRMScorer(ckpt, tok, max_tokens=opts.verify_max_tokens, k=opts.verify_k,
                                rounds=opts.verify_rounds, temperature=opts.verify_temperature,
                                part=opts.verify_part,
                                max_len=opts.max_model_len or ckpt.max_len, long=opts.long,
                                seed=opts.seed)
        fallback = scorer.verdict_tokens.get("fallback")
        if fallback and reporter is not None:
            reporter.note(f"warning: --model {ckpt.model}: {fallback} (recorded in the manifest)")
        return scorer
