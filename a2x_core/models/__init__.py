"""Stage 2, the models: loading and validating model folders, and each model kind (regression, diffusion, Audio2Emotion, the embedded default in ``lipsync``) reduced to what differs between them."""
