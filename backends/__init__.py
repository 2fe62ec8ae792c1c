"""smarthdr inference backends (import name `smarthdr_backends`), found through entry points."""
