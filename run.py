"""The original's MMF entry point, on headlens:

    python run.py config=projects/visual_bert/configs/vqa2/defaults.yaml model=visual_bert dataset=vqa2 \\
        run_type=val checkpoint.resume_zoo=visual_bert.finetuned.vqa2.from_coco_train env.data_dir=/path/to/data \\
        training.trainer=mmf_head_prun|mmf_layer_prun|mmf_exp training.seed=1234 training.batch_size=16 \\
        prune.num_of_examples=10000 prune.is_grad=True prune.positive_prune=False prune.COCO_path=/path/to/val2014

Every key is documented in ``headlens.original.RunConfig``.
"""

import sys

from headlens.original import main, run_mmf

if __name__ == "__main__":
    sys.exit(main(run_mmf))
