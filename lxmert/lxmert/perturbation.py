"""The original's LXMERT pruning script, on headlens:

    python lxmert/lxmert/perturbation.py --COCO_path /path/to/val2014 --method ours|lrp \\
        [--is-positive-pert True] --num-samples 10000 --prune_type head|layer --seed 1234

``--help`` lists the options, including where the questions, answers and features are read.
"""

import sys

from headlens.original import main, run_lxmert_perturbation

if __name__ == "__main__":
    sys.exit(main(run_lxmert_perturbation))
