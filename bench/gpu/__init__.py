"""The GPU measurement suite's Python steps (``bench/gpu_suite.sh`` runs them)."""
