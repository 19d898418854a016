"""Paper-specific analyses built on the engine: Kaplan et al. (bs.kaplan), schedule laws (bs.schedules)."""
