"""The N-body suite behind the demo data: Eisenstein & Hu linear spectra (cosmology), 2LPT
initial conditions and a particle-mesh evolution written as Gadget snapshots (simulate)."""
