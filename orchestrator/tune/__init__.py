"""Ray Tune sweeps over learning rates: the search space, the sweep, its report."""
