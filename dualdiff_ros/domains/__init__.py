"""Where data comes from: one small module per domain, all with the shape of base.Domain."""
from .cabinet import Cabinet
from .round_table import OVERLAP_SETTINGS, RoundTable, overlap_domain


def get_domain(name: str):
    """A synthetic domain by name: cabinet, round_table or overlap_<setting>."""
    if name == "cabinet":
        return Cabinet()
    if name == "round_table":
        return RoundTable()
    if name.startswith("overlap_"):
        return overlap_domain(name[len("overlap_"):])
    raise ValueError(f"unknown domain {name!r}: use cabinet, round_table or overlap_<"
                     f"{'|'.join(OVERLAP_SETTINGS)}>")

# The navigate-to domain: base poses in the PyBullet household (navigate_to.py, sim/), checked against a map.
NAVIGATE_TO = "navigate_to"
