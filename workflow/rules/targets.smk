# What each target reads: the evaluation files of every table (Table 2's variants, the baseline comparisons,
# the ablations, MMLU, RFT, speed, the sweep), the options its report command gets, and what `all` builds.
# Paths come from the rules (rules.X.output), settings and seeds from common.smk.


COMPARE_TABLES = ("table4", "table5", "baselines")  # every method on PruneNet's parameter budget
# tables whose rows can lack a (model, method) the method refuses: a line under them says so
NOTED_TABLES = ("table2", "table4", "table5", "baselines", "table21", "table22", "table10", "table13")


def compare_methods(table):
    """The methods a baseline table compares (config ``compare``; baselines: null = every registered method that
    prunes to PruneNet's parameter budget)."""
    return COMPARE[table] or [name for name, m in METHODS.items() if m.same_budget]


def mmlu_evals():
    """Paper Table 23: dense and each configured method at the configured ratios, every seed of the method."""
    out = [
        rules.evaluate_mmlu.output[0].format(model=m, method="dense", setting=NO_SETTING, ratio="0", seed=SEEDS[0])
        for m in MODELS
    ]
    runs = [(m, meth, r) for m in MODELS for meth in config["mmlu"]["methods"] if supported(m, meth) for r in RATIOS]
    return out + [
        rules.evaluate_mmlu.output[0].format(model=m, method=meth, setting=setting(meth, r), ratio=r, seed=s)
        for m, meth, r in runs
        for s in method_seeds(meth)
    ]


def table_tasks(table):
    """The task columns of a table: the paper's for Tables 4/5 (those evaluated), the MMLU subjects for Table 23,
    else every evaluated task."""
    if table == "table23":
        return [f"mmlu_{s}" for s in config["mmlu"]["subjects"]]
    if table not in PAPER_TASKS:
        return EV["tasks"]
    return [t for t in PAPER_TASKS[table] if t in EV["tasks"]]


for _table in PAPER_TASKS:
    if not table_tasks(_table):
        raise WorkflowError(
            f"{_table} reports {', '.join(PAPER_TASKS[_table])} but evaluate.tasks has none of them: add them"
        )


def transfer_evals():
    """Table 6: each transfer policy applied at its target ratios, and the same-ratio policy at those ratios."""
    out = []
    for m in MODELS:
        for item in TRANSFER:
            for r in map(ratio_tag, item["to"]):
                for s in SEEDS:
                    out.append(eval_file(m, "prunenet", setting("prunenet", r, item["from"]), r, s))
                    out.append(eval_file(m, "prunenet", setting("prunenet", r, float(r)), r, s))
    return [eval_file(m, "dense", NO_SETTING, "0", SEEDS[0]) for m in MODELS] + list(dict.fromkeys(out))


ABL = config["ablations"]


def ablation_runs(table):
    """label -> [(method, setting, ratio)] of one ablation table (paper T7, T10, T13, T16-T19), reference first.

    Each variant runs at the same ratios (T7: the schedule and uniform pruning at its mean ratio) and with its
    method's seeds; the table compares every variant with the first, item by item.
    """
    ratios = [ratio_tag(r) for r in (ABL["ratios"] or PRUNE["ratios"])]

    def at(method, rs, **kw):
        return [(method, setting(method, r, **kw), r) for r in rs]

    if table == "table7":
        schedule = RatioSpec.of(ABL["schedule"])
        return {"uniform": at("prunenet", [ratio_tag(schedule.mean)]), ABL["schedule"]: at("prunenet", [schedule.tag])}
    if table == "table10":
        out = {"PruneNet": at("prunenet", ratios)}
        return out | {f"SliceGPT ({c})": at("slicegpt", ratios, calib=c) for c in ABL["calib_datasets"]}
    if table == "table13":
        high = [ratio_tag(ABL["high_ratio"])]
        return {"PruneNet": at("prunenet", high), "SliceGPT": at("slicegpt", high)}
    pairs = {
        "table16": {"Policy-based": at("prunenet", ratios), "Random": at("random", ratios)},
        "table17": {"Stochastic": at("prunenet", ratios), "Deterministic": at("deterministic", ratios)},
        "table18": {"KS": at("prunenet", ratios, penalty="ks"), "AD": at("prunenet", ratios, penalty="ad")},
        "table19": {"FFN1": at("prunenet", ratios, state="up"), "FFN2": at("prunenet", ratios, state="down")},
    }
    return pairs[table]


def ablation_variants(table):
    """label -> evaluation JSONs (every model, every seed of the method) of one ablation table."""
    return {
        label: [
            eval_file(m, meth, st, r, s)
            for m in MODELS
            for meth, st, r in runs
            if supported(m, meth)
            for s in method_seeds(meth)
        ]
        for label, runs in ablation_runs(table).items()
    }


ATTN = config["attention"]


def attention_evals():
    """Paper Table 20: dense, prunenet-attention at its ratios (every seed), and with RFT (first seed) if asked."""
    ratios = [ratio_tag(r) for r in (ATTN["ratios"] or PRUNE["ratios"])]
    meth = "prunenet-attention"
    out = [eval_file(m, "dense", NO_SETTING, "0", SEEDS[0]) for m in MODELS]
    out += [eval_file(m, meth, setting(meth, r), r, s) for m in MODELS for r in ratios for s in method_seeds(meth)]
    if not (ATTN["rft"] and RFT_ENABLED):
        return out
    return out + [
        rules.evaluate_rft.output[0].format(
            model=m,
            method=meth,
            setting=setting(meth, r),
            ratio=r,
            seed=SEEDS[0],
            dataset=RFT["datasets"][0],
            samples=RFT["table_size"],
        )
        for m in MODELS
        for r in ratios
    ]


def table_methods(table):
    """The methods a table's rows come from (for its notes on skipped models)."""
    if table in ABLATIONS:
        return [meth for runs in ablation_runs(table).values() for meth, _, _ in runs]
    if table in COMPARE_TABLES:
        return compare_methods(table)
    own = {"table20": ["prunenet-attention"], "table21": ["prunenet"], "table22": ["slicegpt"]}
    return (own | {"table23": config["mmlu"]["methods"]}).get(table, PRUNE["methods"])


def table_options(table):
    """The ``--options`` of a table's report command: tasks, bootstrap, and an ablation's variants."""
    opts = {"tasks": table_tasks(table), "bootstrap": config["bootstrap"], "seed": SEEDS[0]}
    opts |= {"variants": ablation_variants(table)} if table in ABLATIONS else {}
    notes = refusal_notes(table_methods(table)) if table in NOTED_TABLES else []
    return opts | ({"notes": notes} if notes else {})


SP = config["speed"]


def speed_threads():
    """Every core of a local run, so the measuring job runs alone; on an executor without a core total (a
    cluster: each job gets its own node share), the compute jobs' ``threads``."""
    try:
        cores = workflow.cores
    except WorkflowError:
        return THREADS
    return cores if isinstance(cores, int) and 0 < cores < 4096 else THREADS


SPEED_ARGS = (
    f"--batch-sizes {' '.join(map(str, SP['batch_sizes']))} --prompt-len {SP['prompt_len']} "
    f"--gen-len {SP['gen_len']} --warmup {SP['warmup']} --repeats {SP['repeats']} --dtype {config['dtype']}"
)


def speed_methods():
    """Table 9's methods: configured, else those of Table 2 and the baseline comparisons (as the sweep)."""
    return config["speed"]["methods"] or sweep_methods()


def speed_file(model, method, setting_, ratio, seed):
    return rules.speed.output[0].format(model=model, method=method, setting=setting_, ratio=ratio, seed=seed)


def speed_files(model):
    """Dense and every Table 9 method at the speed ratios, first seed (speed depends on shapes, not draws)."""
    runs = [("dense", NO_SETTING, "0")]
    runs += [
        (m, setting(m, ratio_tag(r)), ratio_tag(r))
        for m in speed_methods()
        if supported(model, m)
        for r in config["speed"]["ratios"]
    ]
    return [speed_file(model, m, st, r, SEEDS[0]) for m, st, r in runs]


def rft_ratios():
    return [ratio_tag(r) for r in (RFT["ratios"] or PRUNE["ratios"])]


def rft_runs():
    """(model, method, setting, ratio, seed) fine-tuned: the first seed of each configured method and ratio."""
    return [
        (m, meth, setting(meth, r), r, SEEDS[0])
        for m in MODELS
        for meth in RFT["methods"]
        if supported(m, meth)
        for r in rft_ratios()
    ]


def rft_evals(datasets, sizes):
    return [
        rules.evaluate_rft.output[0].format(model=m, method=meth, setting=st, ratio=r, seed=s, dataset=d, samples=n)
        for m, meth, st, r, s in rft_runs()
        for d in datasets
        for n in sizes
    ]


def no_rft_evals():
    """Dense and the pruned models RFT starts from: the 'without RFT' rows of Tables 3 and 8."""
    return [eval_file(m, "dense", NO_SETTING, "0", SEEDS[0]) for m in MODELS] + [eval_file(*run) for run in rft_runs()]


RFT_TABLES = {"table3": "first", "table8": "all"}  # RFT dataset(s) each RFT table compares


def table_inputs(table):
    """Evaluation JSONs of each table: Table 2's runs, the transfer runs (Table 6), or the RFT runs."""
    if table == "table6":
        return transfer_evals()
    if table == "table9":
        return [f for m in MODELS for f in speed_files(m)]
    if table == "table23":
        return mmlu_evals()
    if table == "table20":
        return attention_evals()
    if table in ("table21", "table22"):  # one method on every model
        return all_evals(table_methods(table))
    if table in ABLATIONS:
        dense = [eval_file(m, "dense", NO_SETTING, "0", SEEDS[0]) for m in MODELS]
        return dense + [f for files in ablation_variants(table).values() for f in files]
    if table in COMPARE_TABLES:
        return all_evals(compare_methods(table))
    if table not in RFT_TABLES:
        return all_evals()
    datasets = RFT["datasets"][:1] if RFT_TABLES[table] == "first" else RFT["datasets"]
    return no_rft_evals() + rft_evals(datasets, [RFT["table_size"]])


def sweep_methods():
    """The figure's methods: configured, else every method of Table 2 and of the baseline tables."""
    if SWEEP["methods"]:
        return SWEEP["methods"]
    return list(dict.fromkeys(PRUNE["methods"] + [m for t in COMPARE_TABLES for m in compare_methods(t)]))


def sweep_policies(model, method, seed):
    """The per-ratio policies a policy method's sweep needs (none for other methods)."""
    if not METHODS.get(method).needs_policy:
        return []
    return [policy_file(model, setting(method, ratio_tag(r)), seed) for r in SWEEP["ratios"]]


def sweep_files(model):
    return [
        rules.sweep.output[0].format(model=model, method=m, seed=s)
        for m in sweep_methods()
        if supported(model, m)
        for s in method_seeds(m)
    ]


def final_tables():
    """The tables `all` builds: Tables 1/2/4/5/6/9, the ablations (Tables 7, 10, 13, 16-19), attention pruning
    (Table 20), every model (Tables 21/22), MMLU (Table 23), the baselines table; with RFT, Tables 3/8."""
    tables = [
        "table2",
        "pairs",
        "table1",
        *COMPARE_TABLES,
        "table9",
        *ABLATIONS,
        "table20",
        "table21",
        "table22",
        "table23",
    ]
    tables += ["table6"] if TRANSFER else []
    tables += list(RFT_TABLES) if RFT_ENABLED else []
    return expand(rules.table.output.csv, table=tables)


def final_figures():
    """The figures `all` builds: Figure 1, the perplexity sweep and the speed-up figure per model; with RFT, Figures
    3/4."""
    out = expand(rules.fig1.output, model=MODELS) + expand(rules.ppl_vs_ratio.output, model=MODELS)
    out += expand(rules.speedup.output, model=MODELS)
    return out + (rules.fig3.output + rules.fig4.output if RFT_ENABLED else [])


def get_final_output():
    """What `all` builds: every table and figure, and results/report.md, which lists them."""
    return final_tables() + final_figures() + rules.summary.output
