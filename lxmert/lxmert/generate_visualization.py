"""The original's LXMERT visualisation script, on headlens:

    python lxmert/lxmert/generate_visualization.py --COCO_path /path/to/val2014 --num-samples 2 --seed 1234

Writes, per question, the original's ``<img_id>_prune_<p>.jpg/.tex`` and ``<img_id>_orig.jpg`` for
0/40/60/90 % of the heads pruned, plus headlens' overlays and figures (``--out-dir``).
"""

import sys

from headlens.original import main, run_lxmert_visualization

if __name__ == "__main__":
    sys.exit(main(run_lxmert_visualization))
