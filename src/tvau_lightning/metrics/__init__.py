"""Evaluation metrics as torchmetrics (SPEC §6)."""
