"""Semantic localization: where in a scene a text query applies, as a heatmap, regions and masks.

Owns: chip and patch (dense) features of a scene (`features`), the calibrated text scoring of those
features against a query (`scoring`), the multi-scale chip + patch combination into one map with the
"nothing matches here" decision (`localizer`), the compact int8 store of patch vectors for indexed
scenes (`store`), and grounding a query inside a single image as a coarse mask (`ground`).

May import: `rsrag.config`, `rsrag.fileio`, `rsrag.registry`, `rsrag.fusion`, `rsrag.metrics`,
`rsrag.imageio`, `rsrag.data`, `rsrag.encoders`, `rsrag.geo` (tiling, scenes, `rsrag.geo.heatmap`) and
`rsrag.index` (an indexed scene's stored chip vectors, through the `Library`'s public API). Imported by
`rsrag.eval`, `rsrag.service`, `rsrag.rag` and `rsrag.cli`; never by the layers below.
"""

from rsrag.localize.features import SceneFeatures, array_features, scene_features
from rsrag.localize.localizer import Localization, LocalizeSettings, Localizer, LocalizeError
from rsrag.localize.scoring import NEGATIVES, QueryScorer
from rsrag.localize.store import indexed_features

__all__ = ["Localization", "LocalizeError", "LocalizeSettings", "Localizer", "NEGATIVES", "QueryScorer",
           "SceneFeatures", "array_features", "indexed_features", "scene_features"]
