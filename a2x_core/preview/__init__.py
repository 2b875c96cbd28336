"""See it: the preview video (procedural face), and renders on the user's rig in Blender."""
