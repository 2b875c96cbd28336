"""The single version source: packaging writes the Blender manifest and the Maya .mod from it."""

__version__ = "0.1.0"
