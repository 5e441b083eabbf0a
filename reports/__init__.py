"""Reports: the paper's tables and figures regenerated from a results store.

``greater report --store PATH --out DIR [--grid NAME]`` (or :func:`reports.render.write_report`)
reads only the store written by the benchmark harness -- it never runs a model -- and writes
``DIR/index.html`` (self-contained: inline CSS, figures as relative files), ``DIR/report.md``
and the figures as PNG and SVG under ``DIR/figures/``.

Modules, one job each:

* :mod:`reports.data`: the store as tidy pandas frames (outcomes, per-example records, steps).
* :mod:`reports.stats`: bootstrap intervals over examples and seeds, paired bootstrap, McNemar.
* :mod:`reports.paper`: the paper's reported numbers (``paper_numbers.toml``).
* :mod:`reports.tables`: the report's tables (comparison, paired tests, ablation, transfer,
  compute-matched, provenance) computed from the frames.
* :mod:`reports.figures`: matplotlib/seaborn figures, byte-stable PNG and SVG.
* :mod:`reports.render`: jinja2 templates -> ``index.html`` and ``report.md``.
"""
