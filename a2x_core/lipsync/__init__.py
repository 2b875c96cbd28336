"""The embedded default lip-sync model (``--model default``): speech → phones → ARKit-52.

Stages, one module each: :mod:`.phones` (pocketsphinx recognition and forced alignment),
:mod:`.parallel` (long clips on every core), :mod:`.visemes` (the data table),
:mod:`.coarticulation` (dominance blending), :mod:`.expressions` (loudness, pitch, blinks,
brows) and :mod:`.model` (``DefaultLipSyncModel``, which ties them together).
"""
