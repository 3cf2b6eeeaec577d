"""LatentSync: audio-conditioned latent diffusion for lip synchronisation."""

__version__ = "0.1.0"
