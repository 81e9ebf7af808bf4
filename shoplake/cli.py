"""The ``shoplake`` command line.

    shoplake generate --users 2000 --days 60 --seed 42
    shoplake run ingest --env local --set landing.sources=[shop]
    shoplake pipeline
    shoplake jobs | shoplake tables

Errors end with one line on stderr naming the cause and a non-zero exit code;
``--debug`` (or SHOPLAKE_DEBUG=1) shows the traceback as well.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
import traceback

import click

from common.config import ShopLakeConfig, load_config
from common.errors import DISK_FULL_TEXT, ConfigError, DiskFull, EnvironmentProblem, ShopLakeError, is_disk_full
from shoplake.registry import JOBS, PIPELINE

log = logging.getLogger("shoplake")

_JOB_HELP = "\n".join(f"  {name:<10} {spec.summary}" for name, spec in JOBS.items())

env_option = click.option(
    "--env", default="local", show_default=True, help="Config environment: conf/<env>.yaml (local, cluster)."
)
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set lake.root=/tmp/lake (repeatable).",
)
conf_dir_option = click.option(
    "--conf-dir", default=None, envvar="SHOPLAKE_CONF_DIR", help="Folder with base.yaml (default: the project's conf/)."
)


as_of_option = click.option(
    "--as-of",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Gold jobs use data up to the end of this day [gold.as_of]; default: the data's last day (logged).",
)


def _with_as_of(overrides: tuple[str, ...], as_of) -> tuple[str, ...]:
    return (*overrides, f"gold.as_of={as_of.date().isoformat()}") if as_of else overrides


def _config(env: str, overrides: tuple[str, ...], conf_dir: str | None) -> ShopLakeConfig:
    return load_config(env, overrides, conf_dir)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--debug", is_flag=True, envvar="SHOPLAKE_DEBUG", help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """ShopLake: Spark jobs that turn an online shop's raw data into marketing decisions,
    on Delta Lake tables (bronze -> silver -> gold)."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # py4j is chatty at INFO, and PySpark logs every failed query plan at ERROR
    # before raising; the one-line error at the end says what matters.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.getLogger("pyspark").setLevel(logging.DEBUG if debug else logging.CRITICAL)


@cli.command()
@click.option("--users", type=int, default=None, help="Customers to generate [generate.users].")
@click.option("--days", type=int, default=None, help="Days of activity [generate.days].")
@click.option("--seed", type=int, default=None, help="Random seed; same seed, same files [generate.seed].")
@click.option("--start-date", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First day [generate.start_date].")
@click.option(
    "--attrition",
    type=click.FloatRange(0, 100),
    default=None,
    help="Every customer may leave for good at this multiple of their segment's daily hazard "
    "(0 = only planted regular churners) [generate.attrition].",
)
@click.option(
    "--segment-style",
    type=click.Choice(["overlapping", "distinct"]),
    default=None,
    help="'distinct' draws the planted segments apart (the segmentation tests' shop) [generate.segment_style].",
)
@click.option(
    "--products",
    type=click.IntRange(min=100),
    default=None,
    help="Catalogue size; default one product per ten users, at least 200 [generate.products].",
)
@click.option(
    "--duplicates",
    type=click.Choice(["same_phone", "varied"]),
    default=None,
    help="'varied': second registrations with typos, pinyin names, missing or new phones and e-mails "
    "(for probabilistic identity resolution) [generate.duplicates].",
)
@click.option("--out", default=None, help="Landing folder to write into [generate.out].")
@click.option(
    "--stream",
    "live",
    is_flag=True,
    help="Deliver the events over time (small files in shop/events) for `shoplake stream`; the other "
    "feeds are written at once. Stops when every event is delivered.",
)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=100.0, show_default=True,
              help="With --stream: event lines per second.")  # fmt: skip
@click.option("--chunk-seconds", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="With --stream: one file every this many seconds.")  # fmt: skip
@click.option("--late-share", type=click.FloatRange(0, 1, max_open=True), default=0.01, show_default=True,
              help="With --stream: share of events (with a unique id) held back, delivered late.")  # fmt: skip
@click.option("--late-by-seconds", type=click.FloatRange(min=0), default=900.0, show_default=True,
              help="With --stream: event time delivered before a held-back event follows.")  # fmt: skip
@env_option
@set_option
@conf_dir_option
def generate(
    users, days, seed, start_date, attrition, segment_style, products, duplicates, out,
    live, rate, chunk_seconds, late_share, late_by_seconds, env, overrides, conf_dir,
) -> None:  # fmt: skip
    """Write deterministic sample landing data for the shop source (customers, products,
    events, orders, order lines, campaign touches) with planted ground truth in
    shop/_manifest.json; with --stream, deliver the events over time (shop/_stream_manifest.json)."""
    from shoplake.generate import generate as write_sample
    from shoplake.generate.live import replay

    cfg = _config(env, overrides, conf_dir)
    g = cfg.generate
    out_dir = cfg.resolve_path(out or g.out)
    started = time.monotonic()
    if live:
        click.echo(f"delivering the events into {out_dir}/shop/events at {rate:g} lines/s (Ctrl-C stops)")
        write = functools.partial(
            replay, rate=rate, chunk_seconds=chunk_seconds, late_share=late_share, late_by_seconds=late_by_seconds
        )
    else:
        write = write_sample
    manifest = write(
        out_dir,
        users=users or g.users,
        days=days or g.days,
        seed=g.seed if seed is None else seed,
        start_date=start_date.date() if start_date else g.start_date,
        attrition=g.attrition if attrition is None else attrition,
        segment_style=segment_style or g.segment_style,
        products=products or g.products,
        duplicates=duplicates or g.duplicates,
    )
    if live:
        late = len(manifest["late_event_ids"])
        click.echo(f"delivered {manifest['lines']:,} event lines in {len(manifest['files']):,} files, {late:,} late")
        manifest = manifest["shop"]
    counts = manifest.get("records_expected", {})
    click.echo(f"generated sample shop data in {out_dir}/shop ({time.monotonic() - started:.1f}s)")
    for table, n in sorted(counts.items()):
        click.echo(f"  {table:<24} {n:>10,} records")


@cli.command(
    epilog=f"Jobs:\n\n{_JOB_HELP}",
    context_settings={"max_content_width": 110},
)
@click.argument("job", type=click.Choice(list(JOBS)))
@env_option
@set_option
@conf_dir_option
@as_of_option
@click.option("--run-id", default=None, help="Use this run id instead of a new one.")
def run(job: str, env: str, overrides: tuple[str, ...], conf_dir: str | None, as_of, run_id: str | None) -> None:
    """Run one JOB (see the list below) and record it in ops.run_log."""
    cfg = _config(env, _with_as_of(overrides, as_of), conf_dir)
    _run_jobs(cfg, [job], run_id)


@cli.command()
@click.option(
    "--jobs",
    "job_list",
    default=None,
    help=f"Comma-separated jobs, in order [default: {','.join(PIPELINE)}; with --resume: the run's own list].",
)
@env_option
@set_option
@conf_dir_option
@as_of_option
@click.option(
    "--resume",
    "resume_run_id",
    default=None,
    metavar="RUN_ID",
    help="Continue this pipeline run from its failed step; steps that succeeded are not redone.",
)
def pipeline(
    job_list: str | None, env: str, overrides: tuple[str, ...], conf_dir: str | None, as_of, resume_run_id
) -> None:
    """Run the jobs of the pipeline in order under one run id; the first failure stops it
    and says how to resume. Progress goes to stderr, job summaries to stdout."""
    from common.spark import build_spark
    from shoplake.pipeline import Progress, check_job_list, code_origins, resume_pipeline, run_pipeline

    names = check_job_list(job_list.split(",")) if job_list is not None else None
    cfg = _config(env, _with_as_of(overrides, as_of), conf_dir)
    _check_before_spark(cfg, names or PIPELINE)
    spark = build_spark(cfg)
    log.info("Spark %s, master %s, env %s, lake %s", spark.version, spark.sparkContext.master, cfg.env, cfg.lake_root)
    origins = code_origins(spark)
    log.info("code: driver %s (%s); executors %s (%s)", *origins["driver"], *origins["executor"])
    progress = Progress()
    if resume_run_id:
        result = resume_pipeline(spark, cfg, resume_run_id, names, progress=progress, echo=click.echo)
    else:
        result = run_pipeline(spark, cfg, names or PIPELINE, progress=progress, echo=click.echo)
    click.echo(f"pipeline run {result.run_id} succeeded: ran {', '.join(result.ran) or 'nothing'}", err=True)


def _check_before_spark(cfg: ShopLakeConfig, names) -> None:
    """Fail before the JVM starts (and before the first job of a pipeline writes)."""
    from shoplake.registry import check_lake_root, get_job, validate_all

    validate_all(cfg)
    check_lake_root(cfg)
    if any("privacy" in get_job(name).config_sections for name in names):
        cfg.pseudonym_secret()


def _run_jobs(cfg: ShopLakeConfig, names: list[str], run_id: str | None) -> None:
    from common.spark import build_spark
    from shoplake.registry import run_job

    _check_before_spark(cfg, names)
    spark = build_spark(cfg)
    log.info("Spark %s, master %s, env %s, lake %s", spark.version, spark.sparkContext.master, cfg.env, cfg.lake_root)
    for index, name in enumerate(names, start=1):
        started = time.monotonic()
        click.echo(f"[{index}/{len(names)}] {name} ...", err=True)
        result = run_job(spark, cfg, name, run_id)
        click.echo(result.summary)
        click.echo(
            f"[{index}/{len(names)}] {name} done in {time.monotonic() - started:.1f}s (run {result.run_id})", err=True
        )


@cli.command()
@click.option("--ids", "ids_file", required=True, type=click.Path(dir_okay=False), help="File with one id per line.")
@env_option
@set_option
@conf_dir_option
def forget(ids_file: str, env: str, overrides: tuple[str, ...], conf_dir: str | None) -> None:
    """Erase people from every bronze, silver and gold table and vacuum old file versions.

    Ids are source customer ids (`shop:C10000203`, or `C10000203` for any source)
    or silver user keys. The run log records counts, never the ids."""
    from common.spark import build_spark
    from jobs.forget import read_ids
    from shoplake.registry import check_lake_root, run_job

    cfg = _config(env, overrides, conf_dir)
    check_lake_root(cfg)
    ids = read_ids(ids_file)
    cfg.pseudonym_secret()  # fail before starting Spark when the secret is missing
    spark = build_spark(cfg)
    result = run_job(spark, cfg, "forget", recorded_parameters={"ids_given": len(ids)}, ids=ids)
    click.echo(result.summary)


@cli.command()
@click.option("--once", is_flag=True, help="Process the files there now and stop (availableNow), for schedulers.")
@env_option
@set_option
@conf_dir_option
def stream(once: bool, env: str, overrides: tuple[str, ...], conf_dir: str | None) -> None:
    """Stream new clickstream files (stream.source / stream.feed) into bronze.events and
    bronze.quarantine as they arrive, with ingest's parsing and quarantine rules. Runs
    until Ctrl-C or SIGTERM; the checkpoints under <lake>/_checkpoints make the next start
    resume where it stopped, every record exactly once."""
    from common.spark import build_spark
    from shoplake.registry import run_job

    cfg = _config(env, overrides, conf_dir)
    _check_before_spark(cfg, ["stream"])
    spark = build_spark(cfg)
    log.info("Spark %s, master %s, env %s, lake %s", spark.version, spark.sparkContext.master, cfg.env, cfg.lake_root)
    result = run_job(spark, cfg, "stream", recorded_parameters={"once": once}, once=once)
    click.echo(result.summary)


@cli.command()
@env_option
@set_option
@conf_dir_option
def jars(env: str, overrides: tuple[str, ...], conf_dir: str | None) -> None:
    """Fetch the delta-spark jars matching the installed pyspark and delta-spark wheels
    with Maven, once, into lake.jars (default ./jars); local sessions then load them
    with no download and write through delta-spark (lake.backend auto). Spark's Kafka
    connector comes too, for `shoplake stream` with stream.kafka set."""
    from common.delta.jars import (
        delta_coordinate,
        fetch_delta_jars,
        fetch_kafka_connector_jars,
        jar_folder,
        kafka_connector_coordinate,
    )

    cfg = _config(env, overrides, conf_dir)
    found = fetch_delta_jars(cfg.delta_jars_root)
    click.echo(f"{delta_coordinate()}: {len(found)} jars in {jar_folder(cfg.delta_jars_root)}")
    try:
        kafka = fetch_kafka_connector_jars(cfg.delta_jars_root)
        click.echo(f"{kafka_connector_coordinate()}: {len(kafka)} jars (`shoplake stream` from Kafka)")
    except EnvironmentProblem as exc:  # only the Kafka source needs it
        click.echo(f"warning: {exc}", err=True)


@cli.command()
@click.option("--out", default="dist", show_default=True, help="Folder to write into.")
@click.option("--wheel/--no-wheel", default=True, show_default=True, help="Also build the wheel (needs pip).")
@conf_dir_option
def package(out: str, wheel: bool, conf_dir: str | None) -> None:
    """Build what spark-submit needs: the --py-files zip (common/, jobs/, shoplake/ and conf/),
    the entry file main.py and the wheel, in OUT (see README: spark-submit)."""
    from shoplake.package import build_dist

    for kind, path in build_dist(out, wheel=wheel, conf_dir=conf_dir).items():
        click.echo(f"{kind:<6} {path}")


@cli.command()
@click.option("--run-id", default=None, help="Run to report on; default: the latest pipeline run in ops.run_log.")
@click.option("--out", default=None, help="HTML file to write; default: <lake>/reports/report/<run id>.html.")
@env_option
@set_option
@conf_dir_option
def report(run_id: str | None, out: str | None, env: str, overrides: tuple[str, ...], conf_dir: str | None) -> None:
    """Write a self-contained static HTML report of a run: steps, data quality, RFM,
    segments, churn, rules, recommendations and every job's metrics with charts."""
    from common.spark import build_spark
    from shoplake.report import write_report

    cfg = _config(env, overrides, conf_dir)
    spark = build_spark(cfg)
    path, data = write_report(spark, cfg, run_id, out)
    click.echo(f"report for run {data.run_id} ({len(data.steps)} step(s)): {os.path.abspath(path)}")


@cli.command("jobs")
def list_jobs() -> None:
    """List the jobs and what each does."""
    for name, spec in JOBS.items():
        click.echo(f"{name:<10} {spec.summary}")


@cli.command("tables")
def list_tables() -> None:
    """List every table in the registry with its keys and description."""
    from common.tables import ALL_TABLES

    for name, spec in ALL_TABLES.items():
        keys = ", ".join(spec.keys) or "-"
        flag = " [raw PII]" if spec.pii else ""
        click.echo(f"{name:<26} keys: {keys:<40} {spec.description}{flag}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning any failure into one line and a non-zero exit."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("SHOPLAKE_DEBUG") == "1"
    try:
        cli.main(args=args, prog_name="shoplake", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # One line, like every other error (click would print usage and a hint as well).
        command = exc.ctx.command_path if exc.ctx else "shoplake"
        click.echo(f"error: {exc.format_message()} (see `{command} --help`)", err=True)
        sys.exit(ConfigError.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ShopLakeError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, non-zero exit
        if debug:
            traceback.print_exc()
        if is_disk_full(exc):  # e.g. Spark's scratch space, outside any table write
            click.echo(f"error: disk full ({DISK_FULL_TEXT}): free space and re-run", err=True)
            sys.exit(DiskFull.exit_code)
        first = (str(exc).strip().splitlines() or [""])[0]
        click.echo(f"error: {type(exc).__name__}: {first} (run with --debug for the traceback)", err=True)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
