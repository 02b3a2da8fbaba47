"""Tokenizer layer: frame geometry, adaptive temporal groups, salient canvases with true
(t, h, w) positions, and the frame-sampling baseline (method.md section 1)."""
