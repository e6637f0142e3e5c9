"""``curate validate EXPORTED --student MODEL``: prove that exported shards load, fit and train.

Two parts, one module each:

* ``checks``: format checks under the student's own tokenizer and chat template. Every row must
  render; the assistant part must keep at least one token after masking (the prompt is masked,
  and a prompt longer than ``--max-seq-len`` leaves nothing to learn once TRL truncates); the
  think markers of every style must be balanced in the assistant text; and the token-length
  distribution is reported against ``--max-seq-len`` with the count of rows over it.
* ``sft``: a short TRL ``SFTTrainer`` run on the export's train split (completion-only loss,
  LoRA optional), the same on an equal-size random sample of the pre-selection pool
  (``--baseline``), both evaluated on one held-out set that neither trained on.

Row order. Rows are read in the export's order (rank order); the random baseline sample and the
held-out set are drawn with a seeded generator over the pool sorted by ``id`` ascending, so the
result never depends on the input order or on how the pool was cut into batches.
"""
