"""Scoring: scorers know a reward-model family's conventions, engines run forward passes fast.

Any scorer runs on any engine (principle 3 of docs/DESIGN.md): a scorer turns a trace into token
sequences and reads rewards from what the engine returns; an engine only runs batches.
"""
