"""RNNPose (Xu et al., CVPR 2022): recurrent render-and-compare with a learned correspondence field and weighted LM.

`network` holds the learned parts (encoder, correlation volume, ConvGRU, 3D / 2D descriptors), `pose_solver` the
differentiable weighted Gauss-Newton / LM step, `references` the crop and the reference render, `loop` the
recurrent refinement both training and inference run, `refiner` the `PoseRefiner`, `train` its training task.
"""
