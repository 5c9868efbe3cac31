"""What every layer uses: keypoint sets (keypoint orders), runtime settings, progress
bars, multi-host start-up, drawing. Imports nothing else of rhpe_jax."""
