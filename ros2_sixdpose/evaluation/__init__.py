"""Scoring and studies: they drive the pipeline and the stages, and nothing below imports them.

- `scoring`: the BOP-toolkit-style evaluator (ADD(-S) recall, AR_VSD / AR_MSSD / AR_MSPD) of pose results
  against a split's ground truth.
- `split_run`: the pipeline over every image of a BOP split, its results CSV and its scores
  (`sixdpose eval --pipeline`).
- `replay`: frame counts, latency and pose scores of a replay through the ROS 2 nodes (`sixdpose replay`);
  `replay_run`: the replay itself, end to end (nodes started, bag played, outputs recorded and scored).
- `nocs_study`: Pix2Pix vs BBDM NOCS networks with and without augmentation (`sixdpose study nocs`).
- `retrieval_study`: silhouette vs learned retrieval of initial poses (`sixdpose study retrieval`).
- `demo`: the demo's sequence and pictures (`sixdpose demo`).
"""

# The pose metrics the evaluator computes, by name; here, importable without numpy, for the command line.
METRICS = ("add", "mssd", "mspd", "vsd")
# BOP's protocol counts an instance only when at least 10 % of it is visible (bop_toolkit's `visib_gt_min = 0.1`
# in scripts/eval_calc_errors.py): a hidden instance is not a miss. The default of eval, replay and demo.
BOP_MIN_VISIB = 0.1
