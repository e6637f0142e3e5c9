"""curate: turn reasoning traces into ranked, clean SFT shards.

The library is importable on its own; the command line lives in ``curate_cli`` (folder ``cli/``).
Heavy dependencies (torch, transformers, vllm, datasets) are imported lazily where they are used.
"""

__version__ = "0.1.0"
