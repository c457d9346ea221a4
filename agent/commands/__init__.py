"""Subcommands beyond ``run``: connectivity checks, backfill, checkpoint inspection and reset, the demo."""
