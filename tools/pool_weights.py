"""Write the earlier shipped students that the `toy-reward-pref` pool uses (reward/preference.py) to runs/pool/.

They are training stages of the toy students kept in git history (the weights shipped at those commits), so the
pool holds generators of several stages without shipping their files again:
    python tools/pool_weights.py            # then: stream-r1 train-reward --config toy-reward-pref ...
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

# (commit, shipped short name): what each was is in the commit's message
STAGES = [
    ("8c2db56", "toy-ode-init"),   # ODE-init of the stage-7 teacher, 300 steps
    ("9303dca", "toy-dmd"),        # DMD from the stage-6 teacher
    ("be1b022", "toy-dmd"),        # DMD from the stage-7 teacher and the 300-step ODE-init
    ("be1b022", "toy-stream-r1"),  # Stream-R1 of the same
    ("56f9077", "toy-dmd-small"),  # the small student's first DMD (pruned-teacher critic)
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/pool")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                               check=True).stdout.strip())
    for commit, name in STAGES:
        blob = subprocess.run(["git", "show", f"{commit}:src/stream_r1/weights/{name}.safetensors"], cwd=root,
                              capture_output=True, check=True).stdout
        path = out / f"{name}@{commit}.safetensors"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(blob)
        tmp.replace(path)  # atomic: a killed run leaves no half-written file
        print(path)


if __name__ == "__main__":
    main()
