rule table:
    """Any registered table (paper Tables 1-19, 21-23, the baselines table) from the result JSONs."""
    input:
        lambda w: table_inputs(w.table),
    output:
        csv=report("results/tables/{table}.csv", caption=CAPTION, category="Tables"),
        md="results/tables/{table}.md",
    log:
        "results/logs/report/{table}.log",
    benchmark:
        "results/benchmarks/report/{table}.tsv"
    wildcard_constraints:
        table=alternatives(TABLES.names()),
    conda:
        CONDA_ENV
    params:
        py=PY,
        opts=lambda w: json.dumps(table_options(w.table)),
        caption=lambda w: caption(TABLES.get(w.table)),
    shell:
        "{params.py} -m prunenet report {wildcards.table} --inputs {input} --out {output.csv} --out-md {output.md} "
        "--options {params.opts:q} > {log} 2>&1"


rule spectra:
    """Figure 1's data: FFN1 singular values of dense and PruneNet at each ratio (first/last layer)."""
    input:
        lambda w: [model_dir(w.model, "dense", "0")]
        + [model_dir(w.model, "prunenet", r, setting("prunenet", r), SEEDS[0]) for r in RATIOS],
    output:
        "results/figures/fig1_ecdf_{model}.csv",
    log:
        "results/logs/report/spectra_{model}.log",
    benchmark:
        "results/benchmarks/report/spectra_{model}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **compute_resources(gpu=False),
    params:
        py=PY,
    shell:
        "{params.py} -m prunenet spectra --inputs {input} --out {output} --experiment {wildcards.model} > {log} 2>&1"


rule fig1:
    """Paper Figure 1: ECDF of FFN1 singular values, dense vs PruneNet at each ratio."""
    input:
        rules.spectra.output,
    output:
        report("results/figures/fig1_ecdf_{model}.png", caption=CAPTION, category="Figures"),
    log:
        "results/logs/report/fig1_{model}.log",
    benchmark:
        "results/benchmarks/report/fig1_{model}.tsv"
    conda:
        CONDA_ENV
    params:
        py=PY,
        caption=caption(FIGURES["fig1"]),
    shell:
        "{params.py} -m prunenet report fig1 --inputs {input} --out {output} --experiment {wildcards.model} > {log} 2>&1"


rule fig3:
    """Paper Figure 3: recovery % of dense vs number of RFT samples, one line per ratio."""
    input:
        lambda w: no_rft_evals() + rft_evals(RFT["datasets"][:1], RFT["sizes"]),
    output:
        report("results/figures/fig3_rft_size.png", caption=CAPTION, category="Figures"),
    log:
        "results/logs/report/fig3.log",
    benchmark:
        "results/benchmarks/report/fig3.tsv"
    conda:
        CONDA_ENV
    params:
        py=PY,
        caption=caption(FIGURES["fig3"]),
        opts=json.dumps({"tasks": EV["tasks"]}),
    shell:
        "{params.py} -m prunenet report fig3 --inputs {input} --out {output} --options {params.opts:q} > {log} 2>&1"


rule fig4:
    """Paper Figure 4: RFT train and validation loss curves per ratio."""
    input:
        lambda w: [
            rules.rft.output.curve.format(
                model=m,
                method=meth,
                setting=st,
                ratio=r,
                seed=s,
                dataset=RFT["datasets"][0],
                samples=RFT["table_size"],
            )
            for m, meth, st, r, s in rft_runs()
        ],
    output:
        report("results/figures/fig4_rft_loss.png", caption=CAPTION, category="Figures"),
    log:
        "results/logs/report/fig4.log",
    benchmark:
        "results/benchmarks/report/fig4.tsv"
    conda:
        CONDA_ENV
    params:
        py=PY,
        caption=caption(FIGURES["fig4"]),
    shell:
        "{params.py} -m prunenet report fig4 --inputs {input} --out {output} > {log} 2>&1"


rule sweep:
    """Perplexity of one method at every sweep ratio for one seed (pruned in memory, nothing saved)."""
    input:
        model=rules.download_model.output,
        policies=lambda w: sweep_policies(w.model, w.method, w.seed),
    output:
        "results/sweep/{model}/{method}/s{seed}.json",
    log:
        "results/logs/sweep/{model}/{method}/s{seed}.log",
    benchmark:
        "results/benchmarks/sweep/{model}/{method}/s{seed}.tsv"
    wildcard_constraints:
        method=alternatives(METHODS.names()),
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **compute_resources(),
    params:
        py=PY,
        ratios=" ".join(ratio_tag(r) for r in SWEEP["ratios"]),
        extra=lambda w: method_args(w.method),
        ppl=f"--ppl-dataset {SWEEP['ppl_dataset']} {EV_FLAGS['ppl_seq_len']} {PPL_BLOCKS_ARG}",
        data=lambda w: "" if METHODS.get(w.method).needs_calibration else DATA_ARG,  # else in method_args
        device=config["device"],
    shell:
        "{params.py} -m prunenet sweep --model {input.model} --model-name {wildcards.model} --out {output} "
        "--method {wildcards.method} --ratios {params.ratios} --policies {input.policies} {params.extra} "
        "{params.ppl} {params.data} --seed {wildcards.seed} --device {params.device} > {log} 2>&1"


rule ppl_vs_ratio:
    """Perplexity against compression ratio for every method, seeds as a band; effective sparsity beside it."""
    input:
        lambda w: sweep_files(w.model),
    output:
        png=report("results/figures/ppl_vs_ratio_{model}.png", caption=CAPTION, category="Figures"),
        md="results/figures/ppl_vs_ratio_{model}.md",
    log:
        "results/logs/report/ppl_vs_ratio_{model}.log",
    benchmark:
        "results/benchmarks/report/ppl_vs_ratio_{model}.tsv"
    conda:
        CONDA_ENV
    params:
        py=PY,
        caption=caption(FIGURES["ppl_vs_ratio"]),
    shell:
        "{params.py} -m prunenet report ppl_vs_ratio --inputs {input} --out {output.png} --experiment {wildcards.model} "
        "> {log} 2>&1"


rule summary:
    """results/report.md: the headline table, every table with what in it is significant, every figure."""
    input:
        lambda w: final_tables() + final_figures(),
    output:
        report("results/report.md", caption=CAPTION, category="Report"),
    log:
        "results/logs/report/summary.log",
    benchmark:
        "results/benchmarks/report/summary.tsv"
    conda:
        CONDA_ENV
    params:
        py=PY,
        caption="Every table and figure of this run, one line each: what it shows and what in it is significant.",
    shell:
        "{params.py} -m prunenet report summary --inputs {input} --out {output} > {log} 2>&1"


rule settings:
    """results/tables/settings.md: per method and setting, its release's value, this run's and paper.yaml's."""
    input:
        defaults=ROOT / "config" / "config.yaml",
        paper=ROOT / "config" / "paper.yaml",
    output:
        csv=report("results/tables/settings.csv", caption=CAPTION, category="Tables"),
        md="results/tables/settings.md",
    log:
        "results/logs/report/settings.log",
    benchmark:
        "results/benchmarks/report/settings.tsv"
    conda:
        CONDA_ENV
    params:
        py=PY,
        opts=json.dumps({"here": {m: config[m] for m in METHODS.names() if m in config}}),
        caption=caption(SETTINGS_REPORT),
    shell:
        "{params.py} -m prunenet report settings --inputs {input.defaults} {input.paper} --out {output.csv} "
        "--out-md {output.md} --options {params.opts:q} > {log} 2>&1"
