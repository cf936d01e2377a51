"""PyTorch helpers: custom ops, persistence, training statistics, misc."""
