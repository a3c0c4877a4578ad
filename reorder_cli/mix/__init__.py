"""Mixtures: several sources, weights that change over training, each source in its own order.

The core, as pure vectorised functions (docs/_incoming/mixtures.md, out of the site until wired):
:mod:`.schedule` (weights, shares and their integrals), :mod:`.quota` (the budget's tokens per source:
surplus, shortfall, redistribution), :mod:`.interleave` (the merge by scheduled time) and
:mod:`.shares` (shares per window and the bound). Not yet wired into the config, ``reorder run``, the
stage tasks or the manifest.
"""
