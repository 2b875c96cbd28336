"""Stage 4, after the network: PCA decode, skin and tongue post-processing, jaw and eyes; one chain interface, NumPy (cpu) and torch (gpu) behind it."""
