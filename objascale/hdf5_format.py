"""Public API of the FLIP HDF5 dataset format (official layout + flipbench provenance).

```python
from objascale.hdf5_format import FlipDataset, FlipH5Writer, mask_to_rho, mask_to_bbox
```

* :class:`FlipDataset` — read a file or a directory of shards (``objascale/hdf5_reader.py``);
* :class:`FlipH5Writer` — write a file in the official layout (``objascale/hdf5_writer.py``);
* :func:`mask_to_rho`, :func:`mask_to_bbox`, :func:`mask_to_bbox_official` — mask statistics
  (``objascale/moments.py``);
* codecs (``objascale/codecs.py``) and the layout itself (``objascale/hdf5_schema.py``).
"""

from objascale.codecs import CodecError, decode_image, decode_mask, encode_jpeg, encode_mask_png
from objascale.hdf5_reader import FlipDataset, FlipFormatError, file_sha256, list_shards
from objascale.hdf5_writer import INFO_KEYS, EncodedImage, FlipH5Writer, encode_image, official_file_name
from objascale.moments import mask_to_bbox, mask_to_bbox_official, mask_to_rho

__all__ = [
    "FlipDataset",
    "FlipFormatError",
    "FlipH5Writer",
    "EncodedImage",
    "encode_image",
    "INFO_KEYS",
    "CodecError",
    "official_file_name",
    "list_shards",
    "file_sha256",
    "mask_to_rho",
    "mask_to_bbox",
    "mask_to_bbox_official",
    "encode_jpeg",
    "encode_mask_png",
    "decode_image",
    "decode_mask",
]
