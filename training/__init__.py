"""Training side of ferstream: loaders, the CNN family, training, evaluation and export."""
