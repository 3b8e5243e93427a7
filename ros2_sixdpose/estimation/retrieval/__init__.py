"""Rotation-aware retrieval of initial poses (GS-Pose, Cai et al. 2024): a template bank per object, a score
of a detection's crop against it (training-free silhouette IoU or a learned embedding), and poses built from
the best templates with the translation taken from the detection's mask.
"""
