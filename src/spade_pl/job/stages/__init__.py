"""One module per stage that is more than a few lines (fine-tuning, structure search, benchmark, export)."""
