"""fer-bench: measured speed of the classifier, the detectors, the served stream and the reference pipeline."""
