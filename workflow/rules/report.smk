ALL_EVALS = [eval_file(m, meth, r) for m in MODELS for meth, r in variants(m)]


rule table2:
    """Paper Table 2: zero-shot accuracy (± lm-eval stderr) and recovery % of dense."""
    input:
        ALL_EVALS,
    output:
        csv="results/tables/table2.csv",
        md="results/tables/table2.md",
    params:
        opts=lambda w: json.dumps({"tasks": EV["tasks"]}),
    log:
        "results/logs/report/table2.log",
    benchmark:
        "results/benchmarks/report/table2.tsv"
    shell:
        "{PY} -m prunenet report table2 --inputs {input} --out {output.csv} --options {params.opts:q} > {log} 2>&1"


rule table1:
    """Paper Table 1: parameters, effective sparsity, FLOPs per token and average accuracy."""
    input:
        ALL_EVALS,
    output:
        csv="results/tables/table1.csv",
        md="results/tables/table1.md",
    params:
        opts=lambda w: json.dumps({"tasks": EV["tasks"]}),
    log:
        "results/logs/report/table1.log",
    benchmark:
        "results/benchmarks/report/table1.tsv"
    shell:
        "{PY} -m prunenet report table1 --inputs {input} --out {output.csv} --options {params.opts:q} > {log} 2>&1"


rule fig1:
    """Paper Figure 1: ECDF of FFN1 singular values, dense vs PruneNet at each ratio (first/last layer)."""
    input:
        lambda w: [model_dir(w.model, "dense", "0")] + [model_dir(w.model, "prunenet", r) for r in RATIOS],
    output:
        png="results/figures/fig1_ecdf_{model}.png",
        data="results/figures/fig1_ecdf_{model}.csv",
    log:
        "results/logs/report/fig1_{model}.log",
    benchmark:
        "results/benchmarks/report/fig1_{model}.tsv"
    shell:
        "{PY} -m prunenet report fig1 --inputs {input} --out {output.png} --experiment {wildcards.model} > {log} 2>&1"
