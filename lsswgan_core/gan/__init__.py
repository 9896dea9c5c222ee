"""The GAN: the paper's networks (models), the WGAN-GP and summary losses (losses), the
training loop (train), the duality gap, the run directory (run), torchrun support
(distributed) and sampling (sample)."""
