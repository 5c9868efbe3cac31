"""MPII Human Pose dataset (TFDS builder in mpii_dataset_builder.py)."""
