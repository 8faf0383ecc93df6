rule rft:
    """LoRA recovery fine-tuning of a pruned checkpoint, merged back into a plain checkpoint."""
    input:
        lambda w: model_dir(w.model, w.method, w.ratio, w.setting, w.seed),
    output:
        model=kept(directory("results/rft/{model}/{method}/{setting}/r{ratio}-s{seed}/{dataset}-n{samples}")),
        curve="results/rft/{model}/{method}/{setting}/r{ratio}-s{seed}/{dataset}-n{samples}.csv",
    log:
        "results/logs/rft/{model}/{method}/{setting}/r{ratio}-s{seed}/{dataset}-n{samples}.log",
    benchmark:
        "results/benchmarks/rft/{model}/{method}/{setting}/r{ratio}-s{seed}/{dataset}-n{samples}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **compute_resources(),
    params:
        py=PY,
        device=config["device"],
        data=DATA_ARG,
        train=lambda w: rft_args(),
    shell:
        "{params.py} -m prunenet rft --model {input} --model-name {wildcards.model} --out {output.model} "
        "--log-csv {output.curve} --dataset {wildcards.dataset} --samples {wildcards.samples} {params.data} "
        "{params.train} --seed {wildcards.seed} --device {params.device} > {log} 2>&1"


use rule evaluate as evaluate_rft with:
    input:
        rules.rft.output.model,
    output:
        "results/eval_rft/{model}/{method}/{setting}/r{ratio}-s{seed}/{dataset}-n{samples}.json",
    log:
        "results/logs/evaluate_rft/{model}/{method}/{setting}/r{ratio}-s{seed}/{dataset}-n{samples}.log",
    benchmark:
        "results/benchmarks/evaluate_rft/{model}/{method}/{setting}/r{ratio}-s{seed}/{dataset}-n{samples}.tsv"
