"""Command-line tools beside the library; `scripts.compare` is the comparison harness behind compare_methods.py."""
