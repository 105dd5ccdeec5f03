"""Models: registering, storing, training, evaluating and serving versions."""
