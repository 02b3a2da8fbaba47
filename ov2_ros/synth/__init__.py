"""Synthetic camera scenes with exact ground truth, encoded to H.264 like a camera would."""
