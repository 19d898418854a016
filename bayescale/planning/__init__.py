"""Stage 4: compute-optimal allocation, plans, comparisons and the next run to train."""
