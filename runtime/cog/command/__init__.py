"""Command-line entry points that ship inside the image."""
