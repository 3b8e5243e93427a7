"""Tracking: object poses carried from frame to frame, with the per-instance state machine that starts, loses and
re-finds them (`tracker.py`).

Laid out like DLR's 3DObjectTracking (Stoiber et al., RBGT / SRT3D / ICG): `settings.py` (the region tracker's
settings with the published defaults), `model.py` (the sparse viewpoint model precomputed from the mesh),
`region.py` (the region modality: colour histograms, correspondence lines, gradient and Hessian),
`optimizer.py` (one Tikhonov-regularised Newton step), `region_tracker.py` (the loop), behind the per-frame
refiner interface of `base.py`; `render_compare_tracker.py` is the second per-frame refiner (GS-Pose's
render-and-compare from the previous pose), `factory.py` builds the configured one (config/tracker.yaml).
"""
