"""Networks, loss, augmentation, contrastive methods, datasets and the training loop."""
