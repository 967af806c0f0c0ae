"""Services every plugin uses, below the plugins and the policy: the bottom of the flow.

What belongs here: reading images safely (:mod:`.images`: the guarded decoder, natural order,
``sha256_file``), the one HTTP retry loop (:mod:`.http`), secrets and their redaction
(:mod:`.secrets`), argument checks shared by backends and destinations (:mod:`.checks`) and the one
strict JSON reader (:mod:`.jsonsafe`). A module here imports only :mod:`alpolicy.errors` and this
package: it knows nothing of policies, rules, runs or reports.
"""
