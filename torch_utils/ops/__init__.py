"""Custom ops with a CUDA fast path and a pure-PyTorch reference path."""
