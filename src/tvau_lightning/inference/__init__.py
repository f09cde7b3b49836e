"""Running trained models on videos: heatmaps, regions, tracks, answers, overlays."""
