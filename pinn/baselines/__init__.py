"""Classical methods that the PINN's results are compared with (optional extras; only benchmarks and tests import
them)."""
