"""MRC-Net (Li et al. 2024): pose classification into rotation / centre / depth bins with symmetry-aware soft labels,
the render of the classified pose, multi-scale residual correlation and regression of the residual pose."""
