"""Tracking: a state machine over the refiner that keeps object poses across frames (track, lose, re-detect).

Comes with its issue: each object's track starts from a detection and an estimate, is carried from frame
to frame by the `refinement.base.PoseRefiner`, and is dropped (and re-detected) when the refiner's score
falls; settings as one dataclass loaded from config/. Nothing here yet.
"""
