"""Physics in plain torch: the elastic residual, stress, traction and material parameters."""
