"""A trained network as artefacts for other runtimes (jax.export, SavedModel, TFLite)."""
