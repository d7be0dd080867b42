"""The `crossmodal` command line: a thin layer over crossmodal.collection."""
