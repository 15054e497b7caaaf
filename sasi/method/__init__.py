"""SaSi's training ingredients: losses, volume infill, contrastive and consistency terms."""

IGNORE = -1
"""Label value of unknown voxels; ignored by every loss."""
