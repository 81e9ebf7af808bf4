"""ShopLake's data jobs: one module per job, each with ``run(spark, cfg, run_id, store) -> JobResult``,
listed in :mod:`shoplake.registry` (the app layer, which is the only code that imports them)."""
