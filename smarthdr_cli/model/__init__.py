"""The GFHDR network (Liu et al., ECCV 2022) with the uncertainty judge of the seed paper."""
from smarthdr_cli.model.config import GFHDRConfig
from smarthdr_cli.model.gfhdr import GFHDR

__all__ = ["GFHDR", "GFHDRConfig"]
