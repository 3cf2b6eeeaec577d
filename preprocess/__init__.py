"""The data processing pipeline: raw talking-head videos in, aligned training clips out (one module per step)."""
