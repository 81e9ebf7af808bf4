"""ShopLake's app layer: what runs the data jobs of :mod:`jobs` and what surrounds them.

The command line (``cli``) and the spark-submit entry (``main``), the job registry and
the pipeline runner (``registry``, ``pipeline``), the HTML run report (``report``), the
notebooks' helper (``notebook``), packaging for spark-submit (``package``) and the
sample-shop generator (``generate``). Only this package imports :mod:`jobs`; the data
jobs import :mod:`common` only.
"""
