"""Benchmarks (make bench): the thumbnail engine against naive Pillow, pyvips and the decode floor;
cold start; pipeline throughput; cost. Not tests: figures, compared as ratios within one run."""
