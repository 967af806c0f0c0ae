"""Dask executor for alpolicy: the stateless stage of a run on Dask workers.

``--executor dask-local:N`` starts a :class:`distributed.LocalCluster` of N worker processes for
the run; ``--executor dask://HOST:PORT`` joins a running scheduler. Each worker builds the backend
from the model's spec once (:mod:`alpolicy_dask.worker`) and runs bounded batches of images
(fetch, decode, inference, the sampling rules' pixel measurements); the driver decides in input
order, journals and sends (:mod:`alpolicy_dask.executor`).
"""
