"""Input and output: checkpoints, figures, predictions, monitoring and plots."""
