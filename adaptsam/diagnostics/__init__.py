"""Diagnostics: where does low resolution break a SAM encoder's representation?

* :mod:`adaptsam.diagnostics.ncut`: encoder features of a few images at several resolutions and policies,
  embedded jointly with a normalized cut and coloured, as a PNG grid, plus a CKA table per block.
* :mod:`adaptsam.diagnostics.cka`: linear CKA between token features, after resizing token grids.

Nothing is imported here: ``ncut`` pulls in ncut-pytorch and matplotlib, which the rest of adaptsam never needs.
"""
