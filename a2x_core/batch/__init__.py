"""``a2x batch``: many clips × models on a Dask cluster (local or remote), resumable, reported.

- :mod:`.manifest`: the clip list (CSV, JSON lines or a folder of audio);
- :mod:`.ledger`: what makes a clip done (its outputs and the record of its inputs);
- :mod:`.work`: what a Dask worker runs (warm models, atomic outputs, Blender bakes);
- :mod:`.runner`: the client side (cluster, grouping by model, retries, Ctrl-C);
- :mod:`.report`: ``report.csv`` and ``report.json``;
- :mod:`.blender_bake`: the bake inside Blender (module or binary), one copy of the scene per clip.
"""
