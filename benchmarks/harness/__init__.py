"""The grid harness: specs (:mod:`.spec`), cells and their keys (:mod:`.cells`), dry-run cost
bounds (:mod:`.estimate`) and the runner with its local and Ray executors (:mod:`.runner`).

Results go to a :class:`greater.store.Store`; ``greater.results.load`` reads them back.
"""
