rule prepare:
    """A method's ratio-independent work (e.g. ASVD's sensitivity search), once per model and seed for every ratio."""
    input:
        model=rules.download_model.output,
    output:
        kept("results/prepared/{model}/{method}/{setting}/s{seed}.safetensors"),
    log:
        "results/logs/prepare/{model}/{method}/{setting}/s{seed}.log",
    benchmark:
        "results/benchmarks/prepare/{model}/{method}/{setting}/s{seed}.tsv"
    wildcard_constraints:
        method=alternatives(PREPARED_METHODS),
        setting=alternatives(CHOICES.DATASETS),  # the calibration corpus
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **compute_resources(),
    params:
        py=PY,
        device=config["device"],
        extra=lambda w: method_args(w.method, calib=w.setting),
    shell:
        "{params.py} -m prunenet prepare --model {input.model} --model-name {wildcards.model} --out {output} "
        "--method {wildcards.method} {params.extra} --seed {wildcards.seed} --device {params.device} > {log} 2>&1"


rule prune:
    """Compress with any registered method (PruneNet's policy, the selector ablations, SliceGPT, ...)."""
    input:
        model=rules.download_model.output,
        policy=lambda w: policy_file(w.model, w.setting, w.seed) if METHODS.get(w.method).needs_policy else [],
        prepared=lambda w: prepared_file(w.model, w.method, w.setting, w.seed),
    output:
        kept(directory("results/models/{model}/{method}/{setting}/r{ratio}-s{seed}")),
    log:
        "results/logs/prune/{model}/{method}/{setting}/r{ratio}-s{seed}.log",
    benchmark:
        "results/benchmarks/prune/{model}/{method}/{setting}/r{ratio}-s{seed}.tsv"
    wildcard_constraints:
        method=alternatives(METHODS.names()),
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **compute_resources(),
    params:
        py=PY,
        device=config["device"],
        ratio=lambda w: RatioSpec.from_tag(w.ratio).cli,
        extra=lambda w, input: method_args(
            w.method, input.policy, input.prepared, w.setting if w.setting in CHOICES.DATASETS else None
        ),
    shell:
        "{params.py} -m prunenet prune --model {input.model} --model-name {wildcards.model} --out {output} "
        "--method {wildcards.method} --ratio {params.ratio} {params.extra} "
        "--seed {wildcards.seed} --device {params.device} > {log} 2>&1"
