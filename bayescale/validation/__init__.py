"""Validation: held-out splits, the Huber baseline, SBC calibration, LOO and stacking, simulators."""
