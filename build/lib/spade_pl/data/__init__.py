"""Data: fastMRI-format HDF5 files (real or embedded), their transform, and the Lightning datamodule."""
