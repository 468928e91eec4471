"""`python -m daemon` runs the command line."""

import sys

from daemon.cli import main

sys.exit(main())
