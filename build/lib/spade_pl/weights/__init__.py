"""Network weights in and out: checkpoints of every format read safely, and the export formats."""
