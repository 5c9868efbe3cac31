"""Target encoding (keypoints to heat maps and weights) and decoding (heat maps
to keypoints), apart from the network, as mmpose's codecs."""
