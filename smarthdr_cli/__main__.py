"""`python -m smarthdr_cli` runs the same CLI as the `smarthdr` console script."""
from smarthdr_cli.app import main

if __name__ == "__main__":
    main()
