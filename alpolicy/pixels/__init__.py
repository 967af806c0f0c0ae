"""Measurements of image pixels: perceptual hashes, their index, sharpness and exposure.

What belongs here: :mod:`.imagehash` (dHash/pHash of a thumbnail, Hamming distance),
:mod:`.hashindex` (near-duplicate search over many hashes) and :mod:`.quality` (blur, brightness).
Pure functions of an image, used by the image rules; they read images through :mod:`alpolicy.io`
and know nothing of policies, runs or reports.
"""
