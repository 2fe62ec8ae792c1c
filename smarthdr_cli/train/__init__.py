"""The semi-supervised recipe of the seed paper: losses, masking, augmentation, EMA and the loop."""
