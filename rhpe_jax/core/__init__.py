"""What every layer uses: skeletons (joint orders), runtime settings, progress
bars, multi-host start-up, drawing. Imports nothing else of rhpe_jax."""
