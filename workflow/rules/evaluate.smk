EVAL_ARGS = " ".join(
    [
        EV_FLAGS["tasks"],
        f"--dtype {config['dtype']} --device {config['device']} --seed {SEEDS[0]} {DATA_ARG}",
        EV_FLAGS["limit"],
        f"{EV_FLAGS['ppl_datasets']} {EV_FLAGS['ppl_seq_len']}",
        PPL_BLOCKS_ARG,
    ]
)


MM = config["mmlu"]
MMLU_ARGS = " ".join(
    [
        f"--tasks {' '.join('mmlu_' + s for s in MM['subjects'])} --batch-size {EV['batch_size']} --num-fewshot 0",
        f"--dtype {config['dtype']} --device {config['device']} --seed {SEEDS[0]} {DATA_ARG} --ppl-datasets",
        f"--limit {MM['limit']}" if MM["limit"] else "",
    ]
)


rule evaluate:
    """lm-eval zero-shot tasks (local copies with data_dir, hub tasks otherwise) + perplexity -> JSON."""
    input:
        lambda w: model_dir(w.model, w.method, w.ratio, w.setting, w.seed),
    output:
        "results/eval/{model}/{method}/{setting}/r{ratio}-s{seed}.json",
    log:
        "results/logs/evaluate/{model}/{method}/{setting}/r{ratio}-s{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/{method}/{setting}/r{ratio}-s{seed}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **compute_resources(),
    params:
        py=PY,
        args=EVAL_ARGS,
    shell:
        "{params.py} -m prunenet evaluate --model {input} --model-name {wildcards.model} --method {wildcards.method} "
        "--setting {wildcards.setting} --out {output} {params.args} > {log} 2>&1"


# Paper Table 23: the configured MMLU subjects zero-shot (lm-eval mmlu_<subject> tasks) -> JSON.
use rule evaluate as evaluate_mmlu with:
    output:
        "results/mmlu/{model}/{method}/{setting}/r{ratio}-s{seed}.json",
    log:
        "results/logs/evaluate_mmlu/{model}/{method}/{setting}/r{ratio}-s{seed}.log",
    benchmark:
        "results/benchmarks/evaluate_mmlu/{model}/{method}/{setting}/r{ratio}-s{seed}.tsv"
    params:
        py=PY,
        args=MMLU_ARGS,
