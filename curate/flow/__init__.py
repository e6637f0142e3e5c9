"""`curate run`: the whole flow from one TOML config, resumable stage by stage.

``config`` parses and validates the file against the stage commands' options; ``state`` keeps
OUT/run.json and decides which stages to skip, resume or run again.
"""
