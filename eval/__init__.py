"""Evaluation scripts (SyncNet accuracy; sync confidence, FVD and image quality to come)."""
