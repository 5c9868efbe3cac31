"""COCO-format person keypoints (TFDS builder in coco_keypoints_dataset_builder.py)."""
