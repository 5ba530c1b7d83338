"""Data: datasets by name held in memory (sources), image folders read lazily (folder), class-balanced subsets
(subset) and the seeded, resumable batch stream (stream)."""
from gan_ssl.data.folder import FolderSource, folder_bytes
from gan_ssl.data.sources import (
    FASHION_CLASSES,
    IMAGE_SUFFIXES,
    SYSTEM_DATA_DIR,
    ImageData,
    data_home,
    fit_resolution,
    list_images,
    load_images,
    parse_spec,
    read_image,
    to_float,
    to_uint8,
)
from gan_ssl.data.stream import Batch, BatchStream, EpochSampler, open_training_data
from gan_ssl.data.subset import subset_rows, take_subset

__all__ = ["FASHION_CLASSES", "IMAGE_SUFFIXES", "SYSTEM_DATA_DIR", "Batch", "BatchStream", "EpochSampler", "FolderSource",
           "ImageData", "data_home", "fit_resolution", "folder_bytes", "list_images", "load_images", "open_training_data",
           "parse_spec", "read_image", "subset_rows", "take_subset", "to_float", "to_uint8"]
