"""A submit handler: run the program once per line of the parameter file, in order.

Usage: python submit.py PROGRAM PARAM_FILE — exits non-zero if any run fails
(sweepflow then fails the job; HydraFlow ignored a failed handler).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path


def main() -> int:
    program, param_file = sys.argv[1], Path(sys.argv[2])
    status = 0
    for line in param_file.read_text().splitlines():
        done = subprocess.run([sys.executable, program, *shlex.split(line)], check=False)
        status = status or done.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
