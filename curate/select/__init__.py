"""Selection stages: filter (keep the best), dedup (one of each near-duplicate cluster),
decontam (nothing that overlaps a benchmark)."""
