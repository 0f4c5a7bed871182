"""``python -m sweepflow``: the command line."""

import sys

from sweepflow.cli.main import main

sys.exit(main())
