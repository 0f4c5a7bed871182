"""Start a grandchild ``sleep 60``, record its pid and its own, then sleep (a trial that
hangs)."""

import os
import subprocess
import time
from pathlib import Path

child = subprocess.Popen(["sleep", "60"])
here = Path(__file__).resolve().parent
(here / "child.pid.tmp").write_text(str(child.pid))
(here / "self.pid").write_text(str(os.getpid()))
os.replace(here / "child.pid.tmp", here / "child.pid")
time.sleep(60)
