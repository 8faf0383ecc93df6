rule prune:
    """Compress with any registered method (PruneNet's policy, the selector ablations, SliceGPT, ...)."""
    input:
        model=rules.download_model.output,
        policy=lambda w: policy_file(w.model, w.setting, w.seed) if METHODS.get(w.method).needs_policy else [],
    output:
        directory("results/models/{model}/{method}/{setting}/r{ratio}-s{seed}"),
    log:
        "results/logs/prune/{model}/{method}/{setting}/r{ratio}-s{seed}.log",
    benchmark:
        "results/benchmarks/prune/{model}/{method}/{setting}/r{ratio}-s{seed}.tsv"
    wildcard_constraints:
        method=alternatives(METHODS.names()),
    conda:
        CONDA_ENV
    threads: THREADS
    params:
        py=PY,
        device=config["device"],
        ratio=lambda w: ratio_arg(w.ratio),
        extra=lambda w, input: method_args(w.method, input.policy),
    shell:
        "{params.py} -m prunenet prune --model {input.model} --model-name {wildcards.model} --out {output} "
        "--method {wildcards.method} --ratio {params.ratio} {params.extra} "
        "--seed {wildcards.seed} --device {params.device} > {log} 2>&1"
