"""LightningModules: training and evaluation logic for stage 1 (AHD) and stage 2 (RAE)."""
