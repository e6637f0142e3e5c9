"""Step-separator PRMs (Qwen2.5-Math-PRM-7B/72B, ReasonFlux-PRM-7B): the model card's input.

Input, exactly as the model card builds it: messages [system, user = question, assistant = the
steps, each followed by ``<extra_0>``], chat template applied without a generation prompt. The
assistant content is the thinking steps, then the response steps, with no other markers, so a
trace without thinking gets exactly the card's input. A step's reward is softmax(head)[1] at its
separator.

Trajectory reward: the whole thinking and response, joined by a blank line, scored as one step.
The released ReasonFlux-PRM-7B has no other inference-time route to its trajectory-level term
(the paper trains one, the repository ships no code for it), so this is the documented
approximation; ``--alpha 0`` skips this second pass (about half the compute).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from .. import schema as S
from ..errors import InputError, RowError
from ..steps import SEP, segment_trace
from .checkpoint import STEP_HEAD_KEYS, STEP_SEPARATOR, Checkpoint
from .result import RewardModelScorer, Scored
from .scorer import ScorerFamily
from .windows import plan_windows

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


def load_tokenizer(ckpt: Checkpoint, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(ckpt.path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise InputError(f"--model {ckpt.model}: cannot load its tokenizer "
                         f"({str(e).splitlines()[0]})") from None


def pad_id_of(tok) -> int:
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return 0 if pad is None else int(pad)


@dataclass
class StepPRMScorer(RewardModelScorer):
    family = "step-prm"
    needs = "step_probs"

    ckpt: Checkpoint
    tokenizer: object
    system: str = SYSTEM_PROMPT
    alpha: float = 1.0
    max_len: int | None = None
    long: str = "drop"  # drop | window
    agg: str = "mean"

    def __post_init__(self):
        tok = self.tokenizer
        ids = tok.encode(STEP_SEPARATOR, add_special_tokens=False)
        sep = tok.convert_tokens_to_ids(STEP_SEPARATOR)
        if len(ids) != 1 or sep is None or sep == tok.unk_token_id:
            raise InputError(f"--model {self.ckpt.model}: its tokenizer has no single "
                             f"{STEP_SEPARATOR} token (encodes to {len(ids)} ids); a step PRM "
                             "reads its rewards there")
        if tok.chat_template is None:
            raise InputError(f"--model {self.ckpt.model}: its tokenizer has no chat template; "
                             "the step-PRM input is chat-formatted")
        self.sep_id = int(sep)
        self.pad_id = pad_id_of(tok)
        self.max_len = self.max_len or self.ckpt.max_len
        self.name = self.ckpt.label

    def key(self) -> dict:
        return {"family": self.family, "model": self.ckpt.key(), "system": self.system,
                "max_len": self.max_len, "long": self.long,
                "trajectory_pass": self.alpha > 0}

    def describe(self) -> dict:
        return {"family": self.family, "model": self.ckpt.model, "scorer": self.name,
                "alpha": self.alpha, "agg": self.agg}

    def count_plan(self) -> dict:
        return {"max_len": self.max_len}

    def build(self, question: str, steps: list[str]) -> str:
        content = "".join(s.strip() + STEP_SEPARATOR for s in steps)
        messages = [{"role": "system", "content": self.system},
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": content}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=False)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def rewards(self, table: pa.Table, engine) -> Scored:
        n = table.num_rows
        col = {c: (table.column(c).to_pylist() if c in table.column_names else [None] * n)
               for c in (S.QUESTION, S.TRAJECTORY, S.RESPONSE, S.TRAJECTORY_STEPS,
                         S.RESPONSE_STEPS)}
        out = Scored.empty(n)
        keep, texts, traj_texts, split, step_lists = [], [], [], [], []
        for i in range(n):
            q, t, r = col[S.QUESTION][i], col[S.TRAJECTORY][i] or "", col[S.RESPONSE][i]
            t_steps, r_steps = segment_trace(t, r, col[S.TRAJECTORY_STEPS][i],
                                             col[S.RESPONSE_STEPS][i])
            if any(STEP_SEPARATOR in x for x in (q, t, r, *t_steps, *r_steps)):
                out.drop(i, "contains_separator", f"the text contains {STEP_SEPARATOR}")
                continue
            if not t_steps and not r_steps:
                out.drop(i, "no_steps", "no step to score")
                continue
            keep.append(i)
            split.append(len(t_steps))
            step_lists.append(t_steps + r_steps)
            texts.append(self.build(q, t_steps + r_steps))
            if self.alpha:
                whole = (t.strip() + SEP + r.strip()) if t.strip() else r.strip()
                traj_texts.append(self.build(q, [whole]))
        ids = self._encode(texts)
        traj_ids = self._encode(traj_texts)
        fits, fit_ids, fit_traj = [], [], []
        windowed = []  # (row, step split, [(ids, first scored, count)], trajectory ids)
        for k, i in enumerate(keep):
            out.n_tokens[i] = len(ids[k])
            if len(ids[k]) > self.max_len:
                out.too_long[i] = True
                if self.long == "window":
                    steps = step_lists[k]
                    try:
                        windowed.append((i, split[k], self._windows(col[S.QUESTION][i], steps),
                                         self._tail(col[S.QUESTION][i], steps)
                                         if self.alpha else None))
                    except RowError as e:
                        out.drop(i, e.reason, e.value)
                    continue
                out.drop(i, "too_long", f"{len(ids[k])} tokens > {self.max_len}")
                continue
            fits.append(k)
            fit_ids.append(ids[k])
            if self.alpha:
                fit_traj.append(traj_ids[k])
        extra = [w[0] for _, _, wins, _ in windowed for w in wins]
        extra_traj = [tail for *_, tail in windowed if tail is not None]
        probs = engine.step_probs(fit_ids + extra, self.sep_id, self.pad_id) \
            if fit_ids or extra else []
        traj = engine.step_probs(fit_traj + extra_traj, self.sep_id, self.pad_id) \
            if fit_traj or extra_traj else []
        self._read_windows(out, windowed, probs[len(fit_ids):], traj[len(fit_traj):])
        for j, k in enumerate(fits):
            i = keep[k]
            p = [float(x) for x in probs[j]]
            expected = texts[k].count(STEP_SEPARATOR)
            if len(p) != expected:  # the tokenizer split a separator: positions ≠ steps
                out.drop(i, "separator_mismatch", f"{len(p)} rewards for {expected} steps")
                continue
            out.step_rewards[i] = p[: split[k]]
            out.response_step_rewards[i] = p[split[k]:]
            if self.alpha:
                out.trajectory_reward[i] = float(traj[j][0])
        return out

    # -- traces longer than the context: --long window ----------------------------------------
    def _windows(self, question: str, steps: list[str]) -> list[tuple[list[int], int, int]]:
        """Consecutive windows that each fit (``curate.scoring.windows``): (token ids, offset of
        the first scored step in the window, number of steps scored)."""
        base = len(self._encode([self.build(question, [])])[0])
        cost = [len(x) for x in self._encode([st.strip() + STEP_SEPARATOR for st in steps])]

        def build(begin: int, end: int) -> tuple[int, list[int]]:
            ids = self._encode([self.build(question, steps[begin:end])])[0]
            return len(ids), ids

        return [(ids, start - begin, end - start) for begin, start, end, ids
                in plan_windows(cost, self.max_len - base, build, self.max_len)]

    def _tail(self, question: str, steps: list[str]) -> list[int]:
        """The trajectory pass of a windowed trace: the longest tail of steps that fits."""
        for k in range(len(steps), 0, -1):
            ids = self._encode([self.build(question, [SEP.join(x.strip()
                                                               for x in steps[-k:])])])[0]
            if len(ids) <= self.max_len:
                return ids
        raise RowError("step_too_long", "the last step alone does not fit the context")

    def _read_windows(self, out: Scored, windowed, probs, traj) -> None:
        j = 0
        for t, (i, split, wins, tail) in enumerate(windowed):
            rewards = []
            for _, first, count in wins:
                rewards += [float(x) for x in probs[j][first : first + count]]
                j += 1
            out.step_rewards[i] = rewards[:split]
            out.response_step_rewards[i] = rewards[split:]
            out.windows[i] = len(wins)
            if tail is not None:
                out.trajectory_reward[i] = float(traj[t][0])



class StepPRMFamily(ScorerFamily):
    """Qwen2.5-Math-PRM and ReasonFlux-PRM-7B: a ``*ForProcessRewardModel`` with a
    ``score.0`` / ``score.2`` head of 2 classes, one reward per ``<extra_0>``."""

    name = "step-prm"

    @classmethod
    def detect(cls, ckpt: Checkpoint) -> bool:
        return any(a.endswith("ForProcessRewardModel") for a in ckpt.architectures)

    @classmethod
    def near_miss(cls, ckpt: Checkpoint) -> str | None:
        if all(k in ckpt.shapes for k in STEP_HEAD_KEYS):
            return ("though the checkpoint has a score.0/score.2 head; if it is a step PRM of "
                    "the Qwen2.5-Math-PRM kind, pass --scorer step-prm")
        return None

    @classmethod
    def check(cls, ckpt: Checkpoint) -> dict:
        missing = [k for k in STEP_HEAD_KEYS if k not in ckpt.shapes]
        if missing:
            raise InputError(f"--model {ckpt.model}: a step PRM needs the head weights "
                             f"{', '.join(missing)} (architecture "
                             f"{ckpt.architectures or 'unknown'})")
        out = ckpt.shapes["score.2.weight"][0]
        if out != 2:
            raise InputError(f"--model {ckpt.model}: the step-PRM head has {out} outputs, "
                             "expected 2 (good/bad per step); this checkpoint is not a step PRM")
        return {k: ckpt.shapes[k] for k in STEP_HEAD_KEYS}

    @classmethod
    def build(cls, opts, ckpt: Checkpoint, reporter=None) -> StepPRMScorer:
        tok = load_tokenizer(ckpt, opts.trust_remote_code)
        return StepPRMScorer(ckpt, tok, system=opts.system or SYSTEM_PROMPT, alpha=opts.alpha,
                             max_len=opts.max_model_len or ckpt.max_len, long=opts.long,
                             agg=opts.agg)
