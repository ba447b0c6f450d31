"""Task models built on the rs-lite encoder: captioning (`captioner`) and visual question answering
(`vqa`), each with its model, inference API, training loop and weights (through the encoders'
weights store).

Owns: the models, their training on the shared rs-lite feature caches (`rsrag.encoders.features`),
their weights formats, and `fitting` (early stopping, learning-rate schedule), the loop pieces every
trainer shares, rs-lite's own in `rsrag.training` included.
May import: `rsrag.encoders`, `rsrag.data`, `rsrag.config` (and the base modules `rsrag.imageio`,
`rsrag.fileio`); not `training`, `index`, `rag` or the service, which build on models.
"""
