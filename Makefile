# facelabel: label face images as happy or sad. `make` lists the targets.
# Every target creates and uses the project virtualenv (.venv) itself: on a fresh clone,
# `make label INPUT=... OUTPUT=...` and `make test` need nothing else.

PYTHON_BIN ?= python3
VENV       ?= .venv
PYTHON     := $(VENV)/bin/python
STAMP      := $(VENV)/.installed

DATA_DIR   ?= ../shared/data/fer2013/train
MODEL      ?= model/default
# Where make evaluate writes evaluation.png (confusion matrix, ROC, reliability) and mistakes.html (they show
# faces: kept out of the repo).
FIGURES    ?= out/evaluation
# FER2013's faces of the other five expressions: auxiliary classes in the default recipe.
EXTRA_DATA_DIR ?= ../shared/data/fer2013/train-other
# The part of DATA_DIR that `make evaluate` and `make quantize` score: test (the faces nothing was chosen on,
# the shipped model's), validation (models trained without --refit-of), train or all.
SPLIT      ?= test
# The default model's recipe (trainer/RESULTS.md, "The default recipe"): candidate m13's options, refitted on its
# training and validation faces with the epochs, temperature and threshold its validation run chose, recorded in
# trainer/validation_run.json (that run's facelabel.json). A refit trains a fixed number of epochs: no time budget.
RECIPE     := --extra-data-dir $(EXTRA_DATA_DIR) --no-mirror-average --block-filters 24,48,128,256 \
              --low-resolution 0.2 --refit-of trainer/validation_run.json
# Extra flags for `make train` (see `python -m trainer.task --help`).
TRAIN_FLAGS ?=
# Extra flags for `make label`, e.g. Beam options such as --direct_num_workers=2.
LABEL_FLAGS ?=
PYTEST_FLAGS ?=
# Extra flags for `make bench`, e.g. BENCH_FLAGS="--images 400 --large-photos 4 --memory-points 200,400".
BENCH_FLAGS ?=
# Extra flags for `make bench-scale`, e.g. SCALE_FLAGS="--real 1000 --synthetic 20000,100000" for a quick run.
SCALE_FLAGS ?=
# Extra flags for `make bench`'s photo part, e.g. PHOTO_BENCH_FLAGS="--photos 5 --crops 200".
PHOTO_BENCH_FLAGS ?=
# `make report`: the output folder of a labelling run, local or gs://.
RUN        ?=
# `make serve`: the port of the try-a-face page (it listens on 127.0.0.1 only).
PORT       ?= 8000
# `make dataflow`: the Google Cloud project, region and gs:// temp folder of the job.
PROJECT    ?=
REGION     ?=
TEMP       ?=
JOB_NAME   ?= facelabel-$(shell date -u +%Y%m%d-%H%M%S)
# The shared Dataflow flags (also used by tests/test_dataflow.py's dry run, via `make print-dataflow-flags`):
# - workers install facelabel and its pinned requirements from setup.py;
# - e2-standard-4: 4 vCPUs, so 4 SDK processes, each holding one copy of the (few MB) model, in 16 GB;
# - at most 10 workers; Dataflow autoscales between 1 and that by throughput.
# Runner v2 is the only runner for Python in Beam 2.77, so no --experiments=use_runner_v2 is needed.
DATAFLOW_FLAGS ?= --setup_file=./setup.py --machine_type=e2-standard-4 --max_num_workers=10
# The Flex Template (pipeline/flex_template): its image in Artifact Registry and its spec file in Cloud Storage,
# e.g. IMAGE=europe-west1-docker.pkg.dev/my-project/facelabel/launcher:latest TEMPLATE=gs://my-bucket/templates/facelabel.json
IMAGE      ?=
TEMPLATE   ?=
# `make flex-launch`'s worker settings: the same machine type and bound as DATAFLOW_FLAGS (the setup file is
# set inside the image).
FLEX_FLAGS ?= --worker-machine-type=e2-standard-4 --max-workers=10
comma      := ,

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONDONTWRITEBYTECODE = 1

.DEFAULT_GOAL := help
.PHONY: help install label report serve dataflow print-dataflow-flags train quantize evaluate test bench bench-scale flex-metadata flex-template flex-launch clean

help: ## List the targets
	@echo "facelabel: label face images as happy or sad"
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo
	@echo "Variables: INPUT, OUTPUT, MODEL (default $(MODEL)), DATA_DIR (default $(DATA_DIR)),"
	@echo "           EXTRA_DATA_DIR (default $(EXTRA_DATA_DIR)), TRAIN_FLAGS, LABEL_FLAGS, PYTEST_FLAGS, BENCH_FLAGS,"
	@echo "           PHOTO_BENCH_FLAGS, SPLIT (default $(SPLIT)), FIGURES (default $(FIGURES)), SCALE_FLAGS;"
	@echo "           for dataflow: PROJECT, REGION, TEMP, JOB_NAME,"
	@echo "           DATAFLOW_FLAGS (default $(DATAFLOW_FLAGS))"
	@echo "           for the Flex Template: IMAGE, TEMPLATE, FLEX_FLAGS (default $(FLEX_FLAGS))"
	@echo "           RUN (for report), PORT (for serve, default $(PORT))"

$(STAMP): requirements.txt requirements-test.txt setup.py
	test -x $(PYTHON) || $(PYTHON_BIN) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt -r requirements-test.txt
	$(PYTHON) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the pinned dependencies and facelabel itself

label: $(STAMP) ## Label images: make label INPUT=<folder|glob> OUTPUT=<folder> [MODEL=<SavedModel>]
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make label INPUT=<folder or glob> OUTPUT=<folder> [MODEL=<model>]" >&2; exit 2; }
	$(PYTHON) -m pipeline.run --input "$(INPUT)" --output "$(OUTPUT)" --model "$(MODEL)" $(LABEL_FLAGS)

report: $(STAMP) ## Write report.html (counts, histogram, errors, faces) for a run: make report RUN=<folder>
	@test -n "$(RUN)" || { echo "usage: make report RUN=<output folder of a labelling run>" >&2; exit 2; }
	$(PYTHON) -m pipeline.report "$(RUN)"

serve: $(STAMP) ## Try the model on one image in the browser: make serve [MODEL=..] [PORT=8000]
	$(PYTHON) -m app.server --model "$(MODEL)" --port "$(PORT)"

dataflow: $(STAMP) ## Label on Dataflow: make dataflow INPUT=gs://.. OUTPUT=gs://.. PROJECT= REGION= TEMP=gs://..
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" -a -n "$(PROJECT)" -a -n "$(REGION)" -a -n "$(TEMP)" || { echo \
		"usage: make dataflow INPUT=gs://<folder or glob> OUTPUT=gs://<folder> PROJECT=<project> REGION=<region>" \
		"TEMP=gs://<temp folder> [MODEL=gs://<model>]" >&2; exit 2; }
	$(PYTHON) -m pipeline.run --input "$(INPUT)" --output "$(OUTPUT)" --model "$(MODEL)" \
		--runner=DataflowRunner --project="$(PROJECT)" --region="$(REGION)" --temp_location="$(TEMP)" \
		--job_name="$(JOB_NAME)" $(DATAFLOW_FLAGS) $(LABEL_FLAGS)

print-dataflow-flags:
	@echo $(DATAFLOW_FLAGS)

flex-metadata: $(STAMP) ## Regenerate pipeline/flex_template/metadata.json from the job's flags (pipeline.flags)
	$(PYTHON) -m pipeline.flex_template.metadata > pipeline/flex_template/metadata.json

flex-template: ## Build and push the Flex Template image, write its spec: make flex-template IMAGE=.. TEMPLATE=gs://..
	@test -n "$(IMAGE)" -a -n "$(TEMPLATE)" || { echo "usage: make flex-template IMAGE=<registry>/<image>:<tag>" \
		"TEMPLATE=gs://<bucket>/templates/facelabel.json" >&2; exit 2; }
	docker build -f pipeline/flex_template/Dockerfile -t "$(IMAGE)" .
	docker push "$(IMAGE)"
	gcloud dataflow flex-template build "$(TEMPLATE)" --image="$(IMAGE)" --sdk-language=PYTHON \
		--metadata-file=pipeline/flex_template/metadata.json

flex-launch: ## Launch the Flex Template once: make flex-launch TEMPLATE=gs://.. INPUT=gs://.. OUTPUT=gs://.. PROJECT= REGION= TEMP=gs://..
	@test -n "$(TEMPLATE)" -a -n "$(INPUT)" -a -n "$(OUTPUT)" -a -n "$(PROJECT)" -a -n "$(REGION)" -a -n "$(TEMP)" || { \
		echo "usage: make flex-launch TEMPLATE=gs://<spec> INPUT=gs://<folder or glob> OUTPUT=gs://<folder>" \
		"PROJECT=<project> REGION=<region> TEMP=gs://<temp folder> [MODEL=gs://<model>]" >&2; exit 2; }
	gcloud dataflow flex-template run "$(JOB_NAME)" --template-file-gcs-location="$(TEMPLATE)" \
		--project="$(PROJECT)" --region="$(REGION)" --temp-location="$(TEMP)" $(FLEX_FLAGS) \
		--parameters="input=$(INPUT)$(comma)output=$(OUTPUT)$(if $(filter gs://%,$(MODEL)),$(comma)model=$(MODEL))"

train: $(STAMP) ## Train and export the default model (and its int8 copy) into model/default (about 60 min on 2 cores)
	rm -rf $(MODEL).new
	$(PYTHON) -m trainer.task --data-dir $(DATA_DIR) --output-dir $(MODEL).new $(RECIPE) $(TRAIN_FLAGS)
	$(PYTHON) -m trainer.quantize --model $(MODEL).new --data-dir $(DATA_DIR) --split $(SPLIT) --write
	@# Same weights as the model it replaces? (bit for bit only on the same processor: trainer/machine.py)
	if [ -f $(MODEL)/facelabel.json ]; then $(PYTHON) -m trainer.machine $(MODEL).new $(MODEL); fi
	rm -rf $(MODEL) && mv $(MODEL).new $(MODEL)

quantize: $(STAMP) ## Make MODEL's int8 copy (for --precision int8) and score it against the SavedModel on its SPLIT
	$(PYTHON) -m trainer.quantize --model $(MODEL) --data-dir $(DATA_DIR) --split $(SPLIT) --write

evaluate: $(STAMP) ## Evaluate MODEL on its SPLIT (default test): MODEL/evaluation.json; figures in FIGURES
	$(PYTHON) -m trainer.evaluate --model $(MODEL) --data-dir $(DATA_DIR) --split $(SPLIT) \
		--json $(MODEL)/evaluation.json --figures $(FIGURES)

test: $(STAMP) ## Run the test suite
	$(PYTHON) -m pytest $(PYTEST_FLAGS) tests

bench: $(STAMP) ## Benchmark pipeline.run against a plain loop on 30,000 faces, then photos and crops per --faces mode
	$(PYTHON) -m bench.bench --json bench-results.json $(BENCH_FLAGS)
	$(PYTHON) -m bench.photos --json bench-photos.json $(PHOTO_BENCH_FLAGS)

bench-scale: $(STAMP) ## Peak memory and time per million images (to 2,000,000 rows); writes scale-results.json
	$(PYTHON) -m bench.scale --json scale-results.json $(SCALE_FLAGS)

clean: ## Remove the virtualenv and caches (keeps the shipped model)
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
