"""spade-pl: SPADE structured pruning + fine-tuning of MBDL reconstruction networks."""

__version__ = "0.1.0"
