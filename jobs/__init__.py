"""ShopLake jobs: one module per job, each with ``run(spark, cfg, run_id) -> JobResult``,
listed in :mod:`jobs.registry`."""
