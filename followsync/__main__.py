"""`python -m followsync` runs the command line."""

import sys

from followsync.cli import run

sys.exit(run())
