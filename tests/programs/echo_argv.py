"""Append this process's argv items (after the program name) as one JSON line."""

import json
import os
import sys
from pathlib import Path

line = (json.dumps(sys.argv[1:]) + "\n").encode()
fd = os.open(Path(__file__).resolve().parent / "argv.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
os.write(fd, line)  # one write: concurrent trials never interleave
os.close(fd)
