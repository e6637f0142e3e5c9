"""`curate report`: what happened at each stage of a run, read back from its output folders.

``collect`` turns the manifests of one run (a folder holding stage folders such as out/read,
out/scored, out/filtered …) or of one stage folder into a plain, JSON-ready dict: the funnel
(rows in/out and drop reasons per stage, in flow order read → score → filter → dedup →
decontam → export), timings and throughput, too-long counts, and the score distribution with
top/bottom examples read from the scored stage's data. ``terminal`` renders that dict with rich;
``html`` writes it as one self-contained page (inline SVG, no external URLs). Nothing here
writes into the run's folders.

Examples follow the ranking convention shared by filter and dedup: rows are ranked by ``score``
descending (null scores last); ties are broken by ``id`` ascending (a string compare), so the
top/bottom examples never depend on input order or chunking. Rows with a null score are not
shown as examples.
"""

from __future__ import annotations

from .collect import collect

__all__ = ["collect"]
