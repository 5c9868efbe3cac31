"""Training: state and optimiser, the pure pmapped steps, the loss, the loop."""
