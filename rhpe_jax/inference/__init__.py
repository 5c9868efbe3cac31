"""The one inference path: a trained network on images, one at a time, in
batches from files, with test-time augmentation.

`predictor` (the network call, compiled once per network, decoding,
test-time augmentation), `crop` (the window the network sees), `single` (one
image: JSON and figures), `batch` (many images: one resumable JSON Lines file),
`boxes` (every person box of a detector: a COCO keypoint results file).
"""
