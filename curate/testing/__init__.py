"""TEST HELPERS, not part of the flow: tiny offline model checkpoints for tests, benchmarks and
the README's examples. Kept importable (``python -m curate.testing.tiny_models``) so that a user
can build a tiny PRM to try the model path without a download; nothing in the stages uses it."""
