"""Multi-coil MRI data in fastMRI's HDF5 format: the datamodule, the slice transform, the embedded volumes and
ESPIRiT maps."""
