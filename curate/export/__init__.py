"""``curate export``: ranked SFT shards (messages / ShareGPT / prompt-completion) and a card."""
