"""Training: toy teacher pretraining, ODE init, self-forcing DMD with Stream-R1 weights, its parallelism."""
