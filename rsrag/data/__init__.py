"""Dataset loaders: every source of images (benchmarks, folders, captions files) becomes a list of
`ImageRecord`s. Loaders do not open the images; the index build reports missing or broken files.

Owns: `ImageRecord` and the loaders (`benchmarks`: RSICD / UCM splits, `folders`, `captions`),
the corpus of label-only scene datasets (`corpus`) and the coarser-GSD degradation (`degrade`).
May import: `rsrag.config`, `rsrag.imageio`; nothing above them.
"""

from rsrag.data.benchmarks import SPLITS, load_dataset, load_rsicd, load_ucm
from rsrag.data.captions import load_captions_file
from rsrag.data.folders import load_class_folder, load_image_folder
from rsrag.data.records import ImageRecord, class_names

__all__ = [
    "ImageRecord",
    "SPLITS",
    "class_names",
    "load_captions_file",
    "load_class_folder",
    "load_dataset",
    "load_image_folder",
    "load_rsicd",
    "load_ucm",
]
