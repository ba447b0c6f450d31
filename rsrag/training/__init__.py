"""Training the rs-lite encoder (`encoder`: contrastive training of its tuned tail and projection
heads on the shared feature caches) and building its pair memory (`memory`).

Owns: the encoder's training loop and what a training run writes (weights and card through
`rsrag.encoders.weights`).
May import: `rsrag.encoders`, `rsrag.models`, `rsrag.data`, the metrics; captioner and VQA training
live with their models in `rsrag.models` and import nothing from here.
"""
