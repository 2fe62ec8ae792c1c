"""smarthdr inference backends (import name `smarthdr_backends`), found through entry points.

The plugin layer (docs/architecture.md): backends import smarthdr_cli's core and model, never its
use cases (`merge`, `batch`, ...), which find them through `base.registry()`.
"""
