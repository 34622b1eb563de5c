# Two commands: `make demo` (nothing installed beyond Rust) and `make test` (installs and starts
# LocalStack + MinIO itself, runs every test, stops them). The Rust build cache lives outside the clone.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/lakehouse-target
export SAM_CLI_TELEMETRY := 0
LOCAL := infra/local
TOOLS_BIN := $(HOME)/.cache/lakehouse/venv-tools/bin
SAM := $(HOME)/.cache/lakehouse/venv-sam/bin/sam
LOCALSTACK_PY := $(HOME)/.cache/lakehouse/venv-localstack/bin/python
# The SAM template transformed to plain CloudFormation (outside the clone).
SAM_OUT := $(HOME)/.cache/lakehouse/sam-transformed.json
# Loads the local endpoints/credentials and puts cargo-lambda and the Python reader on PATH.
WITH_ENV := source $(LOCAL)/env.sh && export PATH="$(TOOLS_BIN):$$PATH"

.PHONY: demo test install up run down unit-test check-aged package template validate bench bench-bronze bench-merge bench-gold bench-snapshot bench-soak bench-e2e bench-hostile bench-coldstart bench-readers bench-e2e-smoke bench-cost chaos lambda-zip release fmt lint

# The same workspace-wide build as `make test` (same features), so a later `make test` compiles no
# dependency again; then the CLI binary runs the demo.
demo:
	cargo build --workspace --bins
	$(CARGO_TARGET_DIR)/debug/lakehouse demo --dir .state/demo

install:
	$(LOCAL)/install.sh all

# The pipeline file the AWS template is generated from (`make template AWS_PIPELINE=my-pipeline.toml`).
AWS_PIPELINE ?= infra/aws/pipeline.toml

## The AWS template of $(AWS_PIPELINE) (a bronze queue per trigger window class, schedules for windows
## above 300 s), written by the CLI from infra/aws/template.base.yaml.
template:
	cargo build --workspace --bins
	$(CARGO_TARGET_DIR)/debug/lakehouse aws-template --config $(AWS_PIPELINE) --out infra/aws/template.yaml

## The template checks (no AWS call; builds the CLI): the template is the one $(AWS_PIPELINE) gives, SAM
## CLI's validate --lint, cfn-lint of the template and of the template as CloudFormation receives it
## (SAM transformed: mappings, roles, permissions).
validate: install
	cargo build --workspace --bins
	$(CARGO_TARGET_DIR)/debug/lakehouse aws-template --config $(AWS_PIPELINE) --out infra/aws/template.yaml --check
	cd infra/aws && $(SAM) validate --lint --region us-east-1 --template template.yaml
	$(TOOLS_BIN)/cfn-lint infra/aws/template.yaml
	$(TOOLS_BIN)/python infra/aws/transform_check.py infra/aws/template.yaml $(SAM_OUT)
	$(TOOLS_BIN)/cfn-lint $(SAM_OUT)

## Unit tests (shared crate), the template checks, integration tests against LocalStack + MinIO + moto
## started for the run (the Rust tests, then the stack deployed into LocalStack's CloudFormation and
## its wiring checked), then the quick chaos run.
# Every cargo call selects the whole workspace: the same feature set, so nothing is compiled twice.
test: install validate
	$(LOCAL)/install.sh bench
	cargo build --workspace --tests --bins
	cargo test --workspace --lib --bins
	$(WITH_ENV) && $(LOCAL)/up.sh && trap '$(LOCAL)/down.sh' EXIT && \
	  cargo test --workspace --test '*' -- --test-threads=2 && \
	  $(LOCALSTACK_PY) tests/stack_wiring.py $(SAM_OUT)
	# The short chaos run (~3 min; its own MinIO behind a fault proxy): faults, kills, duplicates → oracle.
	$(TOOLS_BIN)/python bench/chaos.py --quick
	$(MAKE) check-aged

## A lake idle for three months of maintenance (day 0, 31, 62, 93), then every table opened by Python
## deltalake, DuckDB and polars (~1 min; the Rust test maintain::idle_tests also feeds it again).
check-aged: install
	cargo build --workspace --bins
	$(LOCAL)/check_aged.sh $(CARGO_TARGET_DIR)/debug/lakehouse

unit-test:
	cargo test --workspace --lib --bins

## LocalStack + MinIO + moto on 127.0.0.1 (installs only those), with the landing bucket, its
## notification and the queues of infra/local/pipeline.toml.
up:
	$(LOCAL)/install.sh localstack && $(LOCAL)/install.sh minio && $(LOCAL)/install.sh moto
	$(LOCAL)/up.sh

## The local runner on infra/local/pipeline.toml (the workspace's build: nothing compiled twice);
## upload with infra/local/upload.sh, read with infra/local/lakehouse show ...
run: up
	cargo build --workspace --bins
	$(LOCAL)/lakehouse run --config $(LOCAL)/pipeline.toml

down:
	$(LOCAL)/down.sh

## Every benchmark in one go, one after the other (hours on the 2-core machine; each writes its
## bench/results/*.md with machine, date, versions and command): the peers side by side (Python deltalake,
## Spark + Delta), readers, freshness at 70 tables, then the cost report from those step durations.
bench:
	$(MAKE) bench-bronze bench-merge bench-gold bench-snapshot bench-readers bench-e2e
	$(MAKE) bench-cost COST_ARGS="--durations bench/results/e2e.json"
	$(MAKE) bench-soak bench-hostile bench-coldstart

## 100 MB JSONL object → bronze on MinIO, side by side with Python deltalake; writes bench/results/.
bench-bronze: install
	cargo build --release --workspace --bins
	$(WITH_ENV) && $(LOCAL)/up.sh minio >/dev/null && trap '$(LOCAL)/down.sh' EXIT && bench/bench_bronze.sh

## 1,000-row CDC batches (W1 uniform, W2 recent keys) into 100k / 1M-row silver tables (BENCH_SIZES adds
## 10M), side by side with Python deltalake; writes bench/results/merge.{md,json,png}.
bench-merge: install
	$(LOCAL)/install.sh bench
	[ "$${BENCH_SPARK:-1}" = 0 ] || $(LOCAL)/install.sh spark
	cargo build --release --workspace --bins
	$(WITH_ENV) && $(LOCAL)/up.sh minio >/dev/null && trap '$(LOCAL)/down.sh' EXIT && \
	  $(TOOLS_BIN)/python bench/bench_merge.py

## A 1,000-row change reaching gold views over 1M / 10M-row silver tables (BENCH_GOLD_SIZES): views kept by
## deltas, one recomputed, and a Python recompute as the peer; writes bench/results/gold.{md,json,png}.
bench-gold: install
	$(LOCAL)/install.sh bench
	cargo build --release --workspace --bins
	$(WITH_ENV) && $(LOCAL)/up.sh minio >/dev/null && trap '$(LOCAL)/down.sh' EXIT && \
	  $(TOOLS_BIN)/python bench/bench_gold.py

## A daily full extract (`cdc = "snapshot"`, 1M rows; BENCH_SNAPSHOT_SIZES adds 10M), 1% changed the next day:
## our silver step against Python deltalake's overwrite and MERGE; writes bench/results/snapshot.{md,json,png}.
bench-snapshot: install
	$(LOCAL)/install.sh bench
	cargo build --release --workspace --bins
	$(WITH_ENV) && $(LOCAL)/up.sh minio >/dev/null && trap '$(LOCAL)/down.sh' EXIT && \
	  $(TOOLS_BIN)/python bench/bench_snapshot.py

## Spark + Delta, DuckDB (delta extension) and polars open every table the product writes (bronze, silver
## with its change feed, SCD2, tombstones, quarantine, gold), compared row for row with Python deltalake,
## one version back too → bench/results/readers.{md,json}; fails on any disagreement.
bench-readers: install
	$(LOCAL)/install.sh spark
	cargo build --release --workspace --bins
	$(WITH_ENV) && $(LOCAL)/up.sh minio >/dev/null && trap '$(LOCAL)/down.sh' EXIT && \
	  $(HOME)/.cache/lakehouse/venv-spark/bin/python bench/readers.py

## Thousands of small steps per table on MinIO, with and without maintenance: does a step cost the same
## on day 90 as on day 1? (SOAK_TABLES, SOAK_STEPS, SOAK_MAINTAIN_EVERY)
bench-soak: install
	$(LOCAL)/install.sh bench
	cargo build --release --workspace --bins
	$(WITH_ENV) && $(LOCAL)/up.sh minio >/dev/null && trap '$(LOCAL)/down.sh' EXIT && \
	  $(TOOLS_BIN)/python bench/bench_soak.py

## 70 tables (windows 1 s-15 min) through the release runner on LocalStack + MinIO: upload → visible in
## silver/gold p50/p95/p99, runner RSS → bench/results/e2e.{md,png,json}. ~45 min (E2E_MINUTES,
## E2E_WINDOWS, E2E_TABLES).
bench-e2e: install
	$(LOCAL)/install.sh bench
	cargo build --release --workspace --bins
	$(WITH_ENV) && $(LOCAL)/up.sh >/dev/null && trap '$(LOCAL)/down.sh' EXIT && \
	  $(TOOLS_BIN)/python bench/bench_e2e.py

## The same, small and quick, without LocalStack (MinIO + an in-memory SQS): checks the bench itself.
bench-e2e-smoke: install
	$(LOCAL)/install.sh bench
	cargo build --release --workspace --bins
	$(WITH_ENV) && $(LOCAL)/up.sh minio >/dev/null && trap '$(LOCAL)/down.sh' EXIT && \
	  E2E_SQS=mini E2E_TABLES=6 E2E_WINDOWS=1,5,30 E2E_MINUTES=2 E2E_PERIOD_S=15 \
	  E2E_OUT=$$LAKEHOUSE_STATE/bench-e2e-smoke $(TOOLS_BIN)/python bench/bench_e2e.py

## Cost per table per month (serverless at 1/5/15-min freshness vs an always-on Spark cluster), S3
## requests counted per step through a counting proxy on a MinIO of its own (127.0.0.1:9600-9603)
## → bench/results/cost.{md,png,json}. ~20 min. COST_ARGS: see `bench/cost.py --help`.
bench-cost: install
	$(LOCAL)/install.sh bench
	cargo build --release --workspace --bins
	$(WITH_ENV) && $(TOOLS_BIN)/python bench/cost.py $(COST_ARGS)

## One hostile object per case (1 GiB line, 1M bad rows, unterminated quote, 20k columns): peak RSS and
## time of the release CLI's backfill → bench/results/hostile.md.
bench-hostile: install
	$(LOCAL)/install.sh bench
	cargo build --release --workspace --bins
	$(TOOLS_BIN)/python bench/bench_hostile.py

## Cold start of each function's release binary, a fresh process per event against a local Lambda
## Runtime API, on MinIO tables of 10k and 1M rows (COLD_SIZES): init, config, table open, step; and
## the artifacts' sizes (arm64 zips when `make lambda-zip` built them) → bench/results/coldstart.md.
bench-coldstart: install
	$(LOCAL)/install.sh bench
	cargo build --release --workspace --bins
	$(WITH_ENV) && $(LOCAL)/up.sh minio >/dev/null && trap '$(LOCAL)/down.sh' EXIT && \
	  $(TOOLS_BIN)/python bench/cold_start.py

## Chaos run: the debug steps (ingest, 8 concurrent silver per table, gold, maintain) through a fault proxy
## (500/503, resets, timeouts, slow and cut responses, lost commit acks) in front of a MinIO of its own on
## 127.0.0.1:9300 (not `make up`'s), SIGKILLed at random, 30% duplicate deliveries; bronze, silver and gold
## compared with an oracle → bench/results/chaos.md. CHAOS_SEED=N; CHAOS_ARGS=--quick (~1,000 events).
chaos: install
	$(LOCAL)/install.sh bench
	cargo build --workspace --bins
	$(TOOLS_BIN)/python bench/chaos.py $(CHAOS_ARGS)

## The deploy path of the README: `sam build` (cargo lambda + zig, arm64, release) into
## infra/aws/.aws-sam/build, ready for `sam deploy --guided`. Slow on a cold cache (a cross build).
package: install validate
	rustup target add aarch64-unknown-linux-gnu
	$(WITH_ENV) && cd infra/aws && $(SAM) build --beta-features --template template.yaml

## Lambda artifacts (zip) for arm64 Graviton, built with zig for Lambda's glibc.
lambda-zip: install
	rustup target add aarch64-unknown-linux-gnu
	$(WITH_ENV) && for f in bronze silver gold maintain; do \
	  (cd functions/$$f && cargo lambda build --release --arm64 --output-format zip) || exit 1; \
	  ls -l $(CARGO_TARGET_DIR)/lambda/$$f/bootstrap.zip; done

release:
	cargo build --release --workspace --bins

fmt:
	cargo fmt --all

lint: validate
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
