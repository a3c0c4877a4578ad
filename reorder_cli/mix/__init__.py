"""Mixtures: several sources, weights that change over training, each source in its own order.

The core, as pure vectorised functions (docs/guides/mixtures.md): :mod:`.spec` (the ``sources:`` section of a
config, checked), :mod:`.schedule` (weights, shares and their integrals), :mod:`.quota` (the budget's tokens per
source: surplus, shortfall, redistribution), :mod:`.interleave` (the merge by scheduled time) and :mod:`.shares`
(shares per window and the bound). A mixture run's plan is :mod:`reorder_cli.plan.mixture`.
"""
