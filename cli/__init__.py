"""The `curate` command line (installed as the import package ``curate_cli``)."""
