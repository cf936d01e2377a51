"""The one-call GPU suite behind benchmarks/gpu_suite.py: the plan (steps, estimates, budget cut),
the runner (each step a subprocess with a deadline), the output parsers and the report."""
