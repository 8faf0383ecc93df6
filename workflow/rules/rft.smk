RFT_METHODS = RFT.get("methods", ["prunenet"])
RFT_RATIOS = [fmt(r) for r in RFT.get("ratios", config["prune"]["ratios"])]
RFT_DATASETS = RFT.get("datasets", ["wikitext2"])
RFT_SIZES = RFT.get("sizes", [100])
RFT_TABLE_SIZE = RFT.get("table_size", RFT_SIZES[-1])


def rft_dir(model, method, ratio, dataset, samples):
    return f"results/rft/{model}/{method}/r{ratio}/{dataset}-n{samples}"


def rft_eval(model, method, ratio, dataset, samples):
    return f"results/eval_rft/{model}/{method}/r{ratio}/{dataset}-n{samples}.json"


rule rft:
    """LoRA recovery fine-tuning of a pruned checkpoint, merged back into a plain checkpoint."""
    input:
        lambda w: model_dir(w.model, w.method, w.ratio),
    output:
        model=directory("results/rft/{model}/{method}/r{ratio}/{dataset}-n{samples}"),
        curve="results/rft/{model}/{method}/r{ratio}/{dataset}-n{samples}.csv",
    log:
        "results/logs/rft/{model}/{method}/r{ratio}/{dataset}-n{samples}.log",
    benchmark:
        "results/benchmarks/rft/{model}/{method}/r{ratio}/{dataset}-n{samples}.tsv"
    shell:
        "{PY} -m prunenet rft --model {input} --model-name {wildcards.model} --out {output.model} "
        "--log-csv {output.curve} --dataset {wildcards.dataset} --samples {wildcards.samples} {DATA_ARG} "
        "--seq-len {RFT[seq_len]} --batch-size {RFT[batch_size]} --lr {RFT[lr]} --epochs {RFT[epochs]} "
        "--lora-r {RFT[lora_r]} --lora-alpha {RFT[lora_alpha]} --lora-dropout {RFT[lora_dropout]} "
        "--eval-every {RFT[eval_every]} --dtype {config[dtype]} --seed {config[seed]} --device {config[device]} > {log} 2>&1"


rule evaluate_rft:
    """The same evaluation as every other model, on the fine-tuned checkpoint."""
    input:
        "results/rft/{model}/{method}/r{ratio}/{dataset}-n{samples}",
    output:
        "results/eval_rft/{model}/{method}/r{ratio}/{dataset}-n{samples}.json",
    log:
        "results/logs/evaluate_rft/{model}/{method}/r{ratio}/{dataset}-n{samples}.log",
    benchmark:
        "results/benchmarks/evaluate_rft/{model}/{method}/r{ratio}/{dataset}-n{samples}.tsv"
    shell:
        "{PY} -m prunenet evaluate --model {input} --model-name {wildcards.model} --method {wildcards.method} "
        "--out {output} {EVAL_ARGS} > {log} 2>&1"


def _no_rft(model):
    return [eval_file(model, "dense", "0")] + [eval_file(model, m, r) for m in RFT_METHODS for r in RFT_RATIOS]


rule table3:
    """Paper Table 3: each ratio with and without RFT (first RFT dataset, table_size samples)."""
    input:
        [f for m in MODELS for f in _no_rft(m)],
        [rft_eval(m, meth, r, RFT_DATASETS[0], RFT_TABLE_SIZE) for m in MODELS for meth in RFT_METHODS for r in RFT_RATIOS],
    output:
        csv="results/tables/table3.csv",
        md="results/tables/table3.md",
    params:
        opts=lambda w: json.dumps({"tasks": EV["tasks"]}),
    log:
        "results/logs/report/table3.log",
    benchmark:
        "results/benchmarks/report/table3.tsv"
    shell:
        "{PY} -m prunenet report table3 --inputs {input} --out {output.csv} --options {params.opts:q} > {log} 2>&1"


rule table8:
    """Paper Table 8: RFT dataset comparison (WikiText-2 / PTB / Alpaca) at table_size samples."""
    input:
        [f for m in MODELS for f in _no_rft(m)],
        [rft_eval(m, meth, r, d, RFT_TABLE_SIZE) for m in MODELS for meth in RFT_METHODS for r in RFT_RATIOS for d in RFT_DATASETS],
    output:
        csv="results/tables/table8.csv",
        md="results/tables/table8.md",
    params:
        opts=lambda w: json.dumps({"tasks": EV["tasks"]}),
    log:
        "results/logs/report/table8.log",
    benchmark:
        "results/benchmarks/report/table8.tsv"
    shell:
        "{PY} -m prunenet report table8 --inputs {input} --out {output.csv} --options {params.opts:q} > {log} 2>&1"


rule fig3:
    """Paper Figure 3: recovery % of dense vs number of RFT samples, one line per ratio."""
    input:
        [eval_file(m, "dense", "0") for m in MODELS],
        [eval_file(m, meth, r) for m in MODELS for meth in RFT_METHODS for r in RFT_RATIOS],
        [rft_eval(m, meth, r, RFT_DATASETS[0], n) for m in MODELS for meth in RFT_METHODS for r in RFT_RATIOS for n in RFT_SIZES],
    output:
        "results/figures/fig3_rft_size.png",
    params:
        opts=lambda w: json.dumps({"tasks": EV["tasks"]}),
    log:
        "results/logs/report/fig3.log",
    benchmark:
        "results/benchmarks/report/fig3.tsv"
    shell:
        "{PY} -m prunenet report fig3 --inputs {input} --out {output} --options {params.opts:q} > {log} 2>&1"


rule fig4:
    """Paper Figure 4: RFT train and validation loss curves per ratio."""
    input:
        [rft_dir(m, meth, r, RFT_DATASETS[0], RFT_TABLE_SIZE) + ".csv" for m in MODELS for meth in RFT_METHODS for r in RFT_RATIOS],
    output:
        "results/figures/fig4_rft_loss.png",
    log:
        "results/logs/report/fig4.log",
    benchmark:
        "results/benchmarks/report/fig4.tsv"
    shell:
        "{PY} -m prunenet report fig4 --inputs {input} --out {output} > {log} 2>&1"
