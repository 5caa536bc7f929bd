"""Evaluation: a trained net's predictions (infer.py) and its scores on a split (evaluate.py,
the reference's metrics in metrics.py); the label-map upper bound (upper_bound.py), the opt-in
bf16 mode (bf16.py) and the label palette (palette.py)."""
