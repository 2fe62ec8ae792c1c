"""Training and evaluation data: dataset layouts, scenes, patch sampling and the synthetic engine."""
