"""Other projects' files: the authors' MatConvNet networks."""
