"""The runner: frames from files, streams and cameras to heatmaps, boxes, tracks, overlays and results."""
