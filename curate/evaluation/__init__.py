"""Evaluation: how well reward-model scores separate correct from incorrect traces."""
