"""Leeds Sports Pose (LSP/LSPET) dataset (TFDS builder in lsp_dataset_builder.py)."""
