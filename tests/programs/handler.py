"""A submit handler: records its argv and the parameter file, exits with argv[1]."""

import json
import sys
from pathlib import Path

args = sys.argv[1:]
param_file = Path(args[-1])
record = {"argv": args, "text": param_file.read_text(), "absolute": param_file.is_absolute()}
(Path(__file__).resolve().parent / "handler.json").write_text(json.dumps(record))
sys.exit(int(args[0]))
