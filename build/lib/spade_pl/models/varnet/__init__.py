"""The VarNet family: fastMRI's E2E-VarNet, the VarNet with given coil maps, and their instance norm kernel."""
