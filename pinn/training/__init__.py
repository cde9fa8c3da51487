"""Lightning glue: the module, the data module, sampling, resampling, observations and metrics."""
