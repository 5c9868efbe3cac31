"""Images in, examples out: image files, annotation readers, TFDS features,
augmentation, the tf.data pipeline and the synthetic generator."""
