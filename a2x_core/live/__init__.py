"""Live: audio as it arrives through a stream to Live Link Face, VMC and JSON lines, and the take it records."""
