"""Shipped GFHDR student weights (importable as `smarthdr_weights`, packaged into the wheel)."""
