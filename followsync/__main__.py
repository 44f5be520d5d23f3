"""`python -m followsync` runs the command line."""

import sys

from followsync.cli import main

sys.exit(main())
