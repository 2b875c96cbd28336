"""Stage 3, the one loop under every model: tracks in, network calls batched over tracks, frames out; streams on top of it."""
