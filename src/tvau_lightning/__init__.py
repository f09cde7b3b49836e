"""tvau-lightning: fine-grained video anomaly understanding with large vision-language models.

Stage 1 (AHD) turns a frozen LVLM's intermediate vision features into pixel-level anomaly heatmaps;
stage 2 (RAE) turns the heatmaps into prompt tokens for multi-turn anomaly dialogue. See README.md.
"""

__version__ = "0.1.0"
