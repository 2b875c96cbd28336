"""Stage 6, outputs: the file formats (JSON, CSV, NPZ, USD, glTF) and the quick-look plot."""
