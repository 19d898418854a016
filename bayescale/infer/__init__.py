"""Stage 2: the numpyro model, noise, centring, chain starts, the one NUTS path, batches, diagnostics."""
