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
from ..errors import InputError
from ..steps import SEP, segment_trace
from .checkpoint import STEP_SEPARATOR, Checkpoint
from .result import Scored

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
class StepPRMScorer:
    ckpt: Checkpoint
    tokenizer: object
    system: str = SYSTEM_PROMPT
    alpha: float = 1.0
    max_len: int | None = None

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

    def score(self, table: pa.Table, engine) -> Scored:
        n = table.num_rows
        col = {c: (table.column(c).to_pylist() if c in table.column_names else [None] * n)
               for c in (S.QUESTION, S.TRAJECTORY, S.RESPONSE, S.TRAJECTORY_STEPS,
                         S.RESPONSE_STEPS)}
        out = Scored.empty(n)
        keep, texts, traj_texts, split = [], [], [], []
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
            texts.append(self.build(q, t_steps + r_steps))
            if self.alpha:
                whole = (t.strip() + SEP + r.strip()) if t.strip() else r.strip()
                traj_texts.append(self.build(q, [whole]))
        ids = self._encode(texts)
        traj_ids = self._encode(traj_texts)
        fits, fit_ids, fit_traj = [], [], []
        for k, i in enumerate(keep):
            out.n_tokens[i] = len(ids[k])
            if len(ids[k]) > self.max_len:
                out.too_long[i] = True
                out.drop(i, "too_long", f"{len(ids[k])} tokens > {self.max_len}")
                continue
            fits.append(k)
            fit_ids.append(ids[k])
            if self.alpha:
                fit_traj.append(traj_ids[k])
        probs = engine.step_probs(fit_ids, self.sep_id, self.pad_id) if fit_ids else []
        traj = engine.step_probs(fit_traj, self.sep_id, self.pad_id) if fit_traj else []
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
