"""Command helpers too big for cli.py: output and file writing."""
