"""Head and eyes from the voice, offline and on streams."""
