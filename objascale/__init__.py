"""ObjaScale: the FLIP HDF5 dataset format, dataset converters and the Blender generator."""
