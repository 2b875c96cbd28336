"""Stage 1, audio in: files and PCM decoded to 16 kHz mono, audio still arriving, the per-frame windows."""
