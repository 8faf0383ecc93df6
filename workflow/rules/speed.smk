rule speed:
    """Prefill and decode tokens/s of one checkpoint (paper Table 9b). It takes every core, so it runs alone:
    a throughput measured beside another job would measure the other job too."""
    input:
        lambda w: model_dir(w.model, w.method, w.ratio, w.setting, w.seed),
    output:
        "results/speed/{model}/{method}/{setting}/r{ratio}-s{seed}.json",
    log:
        "results/logs/speed/{model}/{method}/{setting}/r{ratio}-s{seed}.log",
    benchmark:
        "results/benchmarks/speed/{model}/{method}/{setting}/r{ratio}-s{seed}.tsv"
    conda:
        CONDA_ENV
    threads: speed_threads()
    resources:
        **compute_resources(),
    params:
        py=PY,
        device=config["device"],
        args=SPEED_ARGS,
    shell:
        "{params.py} -m prunenet speed --model {input} --model-name {wildcards.model} --method {wildcards.method} "
        "--setting {wildcards.setting} --out {output} --device {params.device} {params.args} > {log} 2>&1"


rule speedup:
    """Measured speed-up over dense against the FLOPs-ideal one, per method (results/figures/speedup_{model}.png)."""
    input:
        lambda w: speed_files(w.model),
    output:
        report("results/figures/speedup_{model}.png", caption=CAPTION, category="Figures"),
    log:
        "results/logs/report/speedup_{model}.log",
    benchmark:
        "results/benchmarks/report/speedup_{model}.tsv"
    conda:
        CONDA_ENV
    params:
        py=PY,
        caption=caption(FIGURES["speedup"]),
    shell:
        "{params.py} -m prunenet report speedup --inputs {input} --out {output} --experiment {wildcards.model} "
        "> {log} 2>&1"
