"""The one inference path: a trained network on images, one at a time, in
batches from files, with test-time augmentation.

`estimator` (`PoseEstimator`: a workdir's or an export's network in one
call), `topdown` (crops, heat maps, flip and box-scale averaging, decoding
into image pixels, in numpy), `predictor` (the network call, compiled once per
network), `crop` (the window the network sees, cut in numpy), `single` (one
image: JSON and figures), `batch` (many images: one resumable JSON Lines
file), `boxes` (every person box of a detector: a COCO keypoint results
file), `video` (a video or a webcam, `tracking`, `smoothing`).
"""
