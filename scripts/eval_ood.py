"""The OOD robustness matrix of the zoo: a thin wrapper of ``l2o eval-ood``.

    python scripts/eval_ood.py [--zoo NAME ...] [--out DIR] [--batch 64] [--steps 200]

writes DIR/report.md, results.csv, results.json and one PNG per (entry, scenario).
"""

import sys

from l2o.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval-ood", *sys.argv[1:]]))
