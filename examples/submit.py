"""A submit handler: run the program once per line of the parameter file, in order.

Usage: python submit.py PROGRAM PARAM_FILE — exits non-zero if any run fails
(sweepflow then fails the job; HydraFlow ignored a failed handler).

Each line of the parameter file is one JSON object, one per trial:
``{"params": {"width": "250", "height": "150"}, "args": ["width=250", "height=150"]}``.
``args`` are the program's arguments as they are (no shell quoting to undo, any value
fits on its line); ``params`` are the swept values by key, e.g. to name cluster jobs.
A job with ``submit_format: args`` (HydraFlow's format) writes ``shlex``-quoted items
instead: split each line with ``shlex.split``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def main() -> int:
    program, param_file = sys.argv[1], Path(sys.argv[2])
    status = 0
    for line in param_file.read_text(encoding="utf-8").splitlines():
        trial = json.loads(line)
        done = subprocess.run([sys.executable, program, *trial["args"]], check=False)
        status = status or done.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
