"""A local Spark session with Delta Lake and S3A on MinIO, for bench/peer_spark.py and bench/readers.py.

Runs in the venv `infra/local/install.sh spark` makes ($LAKEHOUSE_HOME/venv-spark): the Delta and S3A jars
come from the local paths it listed in spark-jars.txt (fetched once from Maven Central), so nothing is
resolved or downloaded here. Endpoint and keys: MINIO_ENDPOINT, MINIO_ROOT_USER, MINIO_ROOT_PASSWORD.
"""
import os
import time

ENV = os.environ
HOME = ENV.get("LAKEHOUSE_HOME") or os.path.expanduser("~/.cache/lakehouse")
VENV = ENV.get("SPARK_VENV") or os.path.join(HOME, "venv-spark")
PYTHON = os.path.join(VENV, "bin", "python")


def jars():
    path = os.path.join(VENV, "spark-jars.txt")
    if not os.path.exists(path):
        raise SystemExit(f"no {path}: run `infra/local/install.sh spark` first")
    return [j for j in open(path).read().split() if j]


def s3a(uri):
    """s3://bucket/key -> s3a://bucket/key (the same object for delta-rs and Hadoop)."""
    return "s3a://" + uri[len("s3://"):] if uri.startswith("s3://") else uri


def session(app, cores=2, **conf):
    """A SparkSession on local[cores] with Delta and S3A on MinIO; returns (spark, seconds it took)."""
    from pyspark.sql import SparkSession
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", PYTHON)
    t0 = time.time()
    b = (SparkSession.builder.master(f"local[{cores}]").appName(app)
         .config("spark.jars", ",".join(jars()))
         .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
         .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
         .config("spark.ui.enabled", "false")
         .config("spark.driver.host", "127.0.0.1")
         .config("spark.driver.bindAddress", "127.0.0.1")
         .config("spark.sql.session.timeZone", "UTC")
         .config("spark.hadoop.fs.s3a.endpoint", ENV["MINIO_ENDPOINT"])
         .config("spark.hadoop.fs.s3a.endpoint.region", "us-east-1")
         .config("spark.hadoop.fs.s3a.path.style.access", "true")
         .config("spark.hadoop.fs.s3a.connection.ssl.enabled", "false")
         .config("spark.hadoop.fs.s3a.access.key", ENV["MINIO_ROOT_USER"])
         .config("spark.hadoop.fs.s3a.secret.key", ENV["MINIO_ROOT_PASSWORD"])
         .config("spark.hadoop.fs.s3a.aws.credentials.provider",
                 "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"))
    for k, v in conf.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel(ENV.get("SPARK_LOG_LEVEL", "ERROR"))
    return spark, time.time() - t0


def jvm_pid(spark):
    """The JVM the PySpark driver started (spark-submit execs java, so its Popen is the JVM)."""
    proc = getattr(spark.sparkContext._gateway, "proc", None)
    return proc.pid if proc is not None else None


def rss_mb(pid, field="VmHWM"):
    """Peak (VmHWM) or current (VmRSS) resident memory of a process, MB; None if it is gone."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def versions(spark=None):
    import importlib.metadata as md
    out = {}
    for p in ("pyspark", "delta-spark", "duckdb", "duckdb-extension-delta", "polars", "deltalake", "pyarrow"):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    if spark is not None:
        out["spark"] = spark.version
        out["hadoop"] = spark.sparkContext._jvm.org.apache.hadoop.util.VersionInfo.getVersion()
        out["java"] = spark.sparkContext._jvm.java.lang.System.getProperty("java.version")
    return out
