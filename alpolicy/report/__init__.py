"""What a person reads after a run: the static HTML report and the what-if comparison.

What belongs here: :mod:`.html` (the run report page), :mod:`.svg` (its charts), :mod:`.whatif`
(which stored images two policies would send), :mod:`.evaluation` (the page of ``alpolicy
evaluate``: errors captured per policy, drawn) and :mod:`.markup` (the one HTML builder: a value is
escaped unless it is markup built there). It reads a journal written by :mod:`alpolicy.runtime`;
nothing below imports it.
"""
