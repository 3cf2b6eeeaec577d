"""TREPA: temporal representation alignment loss on VideoMAE-v2 features (U-Net stage-2 training)."""
