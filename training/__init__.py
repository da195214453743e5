"""Training side of ferstream: datasets, the training loop, evaluation and export."""
