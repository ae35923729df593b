"""The whole loop on a replayed, shifted stream (`tagops simulate`), its result stamped for the docs.

    python benchmarks/simulate.py [--family linear|transformer] [--engine uvicorn|ray]
                                  [--output benchmarks/results/simulate-FAMILY.json]

Runs ``tagops simulate`` (a state folder of its own under TAGOPS_HOME; docs/loop.md) and adds when, how
and where it was measured to the JSON the command writes. The bars are the command's ``verdict``: no drift
alarm on in-distribution windows, an alarm in the first shifted window, the retrained challenger promoted
and served after the reload, a paired 95 % interval of the F1 margin on the shifted holdout above 0, and
no prediction, feedback or shadow row lost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from stamp import stamp

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--family", choices=["linear", "transformer"], default="linear")
    parser.add_argument("--engine", choices=["uvicorn", "ray"], default="uvicorn")
    parser.add_argument("--output", type=Path, help="default: benchmarks/results/simulate-FAMILY.json")
    args = parser.parse_args()
    output = (args.output or RESULTS / f"simulate-{args.family}.json").resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "tagops.cli", "simulate", "--family", args.family]
    subprocess.run([*command, "--engine", args.engine, "--output", str(output)], check=True)
    result = json.loads(output.read_text(encoding="utf-8"))
    result.update(stamp())
    output.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(output)


if __name__ == "__main__":
    main()
