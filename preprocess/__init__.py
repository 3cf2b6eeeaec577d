"""Data processing pipeline for training data: one module per step."""
