"""Numbers several packages must agree on, defined once."""

# ImageNet channel statistics: the data pipeline normalizes clips with them and targets undo it (VideoMAE's defaults).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
