"""Change over time: what changed between two dates of the same place, where, how much, and in words.

Owns: nuisance models for calibration and synthetic pairs (`nuisance`), concept banks for "what a chip
shows" (`concepts`), the calibrated change score (`score`), change maps of two scenes or two dates of
an indexed series with regions, areas and before/after labels (`detect`, `series`), and change
sentences in the style of people's change captions (`captions`).

May import: rsrag BASE (config, fileio, registry, fusion, metrics) and imageio, data, encoders, geo,
index. Nothing below the eval/service/rag/cli layers imports it.
"""
