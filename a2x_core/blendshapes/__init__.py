"""Stage 5, the blendshape solve: geometry to ARKit pose weights (NumPy and torch), and its settings."""
