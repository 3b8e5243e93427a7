"""Pose refinement: render-and-compare stages that turn an estimator's rough poses into accurate ones.

`base.PoseRefiner` is the interface; implementations are built by name from config/refiner*.yaml.
"""
