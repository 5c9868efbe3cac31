"""The one inference path: a trained network on images, one at a time, in
batches from files, with test-time augmentation."""
