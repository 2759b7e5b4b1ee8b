"""Numbers several packages must agree on, defined once."""

# ImageNet channel statistics: the data pipeline normalizes clips with them and targets undo it (VideoMAE's defaults).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# A token id meaning "no frame here" ([PAD]): the data pipeline writes it where a clip runs past its video's end, the
# token stem embeds it as its [PAD] row, and token targets leave it out of the loss (VIMPAC App. A.1).
PAD_TOKEN = -1
