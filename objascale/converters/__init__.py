"""Native dataset -> FLIP HDF5 converters (COCO, LVIS, Open Images V7, KITTI-360, Hypersim).

Each module documents its source layout and evaluation protocol; ``common.convert`` runs any of them.
"""
