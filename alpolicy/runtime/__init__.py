"""How a run happens, above the plugins it orchestrates.

What belongs here: the pipeline (:mod:`.pipeline`: source -> backend -> policy -> sampler ->
destination, concurrency, retries of deferred deliveries), the SQLite journal that makes a run
resumable (:mod:`.journal`) and its one-writer lock (:mod:`.journal_lock`), the sampling stage at
run time with the journal-backed usage counters (:mod:`.sampler`), the progress line
(:mod:`.progress`) and the run's summary (:mod:`.run_report`). Plugins never import this package.
(It is not called ``alpolicy.run``: that name is the public function.)
"""
