# What each target reads: the evaluation files of every table (Table 2's variants, the baseline comparisons,
# the ablations, MMLU, RFT, speed, the sweep), the options its report command gets, and what `all` builds.
# Paths come from the rules (rules.X.output), settings and seeds from common.smk.


def spec(table):
    """A table's declared spec (prunenet/reporting/targets.py): its inputs' kind, methods, tasks, notes, variants."""
    return TABLE_SPECS[table]


def compare_methods(table):
    """The methods a baseline table compares (config ``compare.<table>``; null = every registered method that
    prunes to PruneNet's parameter budget)."""
    return COMPARE[table] or [name for name, m in METHODS.items() if m.same_budget]


def mmlu_evals(table):
    """Paper Table 23: dense and each of the table's methods (mmlu.methods) at prune.ratios, every seed of the
    method."""
    out = [
        rules.evaluate_mmlu.output[0].format(model=m, method="dense", setting=NO_SETTING, ratio="0", seed=SEEDS[0])
        for m in MODELS
    ]
    runs = [(m, meth, r) for m in MODELS for meth in table_methods(table) if supported(m, meth) for r in RATIOS]
    return out + [
        rules.evaluate_mmlu.output[0].format(model=m, method=meth, setting=setting(meth, r), ratio=r, seed=s)
        for m, meth, r in runs
        for s in method_seeds(meth)
    ]


def table_tasks(table):
    """The task columns of a table: the paper's where its spec names them (those evaluated), the MMLU subjects
    where it names ``mmlu``, else every evaluated task."""
    tasks = spec(table).tasks
    if tasks == "mmlu":
        return [f"mmlu_{s}" for s in config["mmlu"]["subjects"]]
    if tasks is None:
        return EV["tasks"]
    return [t for t in tasks if t in EV["tasks"]]


for _table, _spec in TABLE_SPECS.items():
    if isinstance(_spec.tasks, tuple) and not table_tasks(_table):
        raise WorkflowError(f"{_table} reports {', '.join(_spec.tasks)} but evaluate.tasks has none of them: add them")


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


def table_models(table):
    """The models of a table's rows: every configured model, or the one a config key names (``TableSpec.models``,
    e.g. large_model for paper Tables 14/15)."""
    source = spec(table).models
    if source is None:
        return MODELS
    if not config.get(source):
        raise WorkflowError(f"{table} is built on the model {source} names: set {source} to a key of models")
    return [config[source]]


def variant_ratios(key):
    """The ratio wildcards an ablation variant runs at (``Variant.ratios``: a key of config ``ablations``, or
    ``prune`` / ``rft`` for prune.ratios / rft.ratios)."""
    if key == "ratios":
        return [ratio_tag(r) for r in (ABL["ratios"] or PRUNE["ratios"])]
    if key == "prune":
        return RATIOS
    if key == "rft":
        return rft_ratios()
    if key == "high_ratio":
        return [ratio_tag(ABL["high_ratio"])]
    schedule = RatioSpec.of(ABL["schedule"])
    return [schedule.tag] if key == "schedule" else [ratio_tag(schedule.mean)]


def ablation_runs(table):
    """label -> [(method, setting, ratio, rft dataset or None)] of one ablation table from its spec's variants,
    reference first.

    Each variant runs at its ratios (the same for every variant but the schedule's, which is compared at its mean
    ratio) with its method's seeds; a variant over ``each`` corpus is one variant per ablations.calib_datasets.
    """
    out = {}
    for v in spec(table).variants:
        if v.rft and not RFT_ENABLED:
            raise WorkflowError(f"{table} compares runs after RFT: add an rft section to the config (rft.ratios)")
        for calib in ABL["calib_datasets"] if v.calib == EACH_CALIB else [v.calib]:
            label = v.label.format(calib=calib, schedule=ABL["schedule"])
            rs = variant_ratios(v.ratios)
            out[label] = [(v.method, setting(v.method, r, calib=calib, **v.policy), r, v.rft) for r in rs]
    return out


def rft_eval_file(model, method, setting_, ratio, dataset):
    """The evaluation of a run fine-tuned on ``dataset``: its first seed, rft.table_size samples."""
    return rules.evaluate_rft.output[0].format(
        model=model,
        method=method,
        setting=setting_,
        ratio=ratio,
        seed=SEEDS[0],
        dataset=dataset,
        samples=RFT["table_size"],
    )


def variant_evals(model, method, setting_, ratio, rft):
    """One variant run's evaluations: every seed of its method, or, fine-tuned, the first seed's after RFT."""
    if rft:
        return [rft_eval_file(model, method, setting_, ratio, rft)]
    return [eval_file(model, method, setting_, ratio, s) for s in method_seeds(method)]


def ablation_variants(table):
    """label -> evaluation JSONs (every model of the table) of one ablation table."""
    return {
        label: [
            f
            for m in table_models(table)
            for meth, st, r, rft in runs
            if supported(m, meth)
            for f in variant_evals(m, meth, st, r, rft)
        ]
        for label, runs in ablation_runs(table).items()
    }


ATTN = config["attention"]


def attention_evals(table):
    """Paper Table 20: dense, the table's attention method at attention.ratios (every seed), and with RFT (first
    seed) if asked."""
    ratios = [ratio_tag(r) for r in (ATTN["ratios"] or PRUNE["ratios"])]
    (meth,) = table_methods(table)
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
    if spec(table).variants:
        return [run[0] for runs in ablation_runs(table).values() for run in runs]
    methods = spec(table).methods
    if methods == "compare":
        return compare_methods(table)
    if methods == "mmlu":
        return config["mmlu"]["methods"]
    return PRUNE["methods"] if methods is None else list(methods)


def table_options(table):
    """The ``--options`` of a table's report command: tasks, bootstrap, and an ablation's variants."""
    opts = {"tasks": table_tasks(table), "bootstrap": config["bootstrap"], "seed": SEEDS[0]}
    opts |= {"variants": ablation_variants(table)} if spec(table).variants else {}
    methods = table_methods(table)
    notes = refusal_notes(methods, table_models(table)) + settings_note(methods) if spec(table).notes else []
    return opts | ({"notes": notes} if notes else {})


def settings_note(methods):
    """The line pointing to settings.md under a table with a method whose default deviates from its release."""
    return [SETTINGS_NOTE] if any(deviates(METHODS.get(m)) for m in methods) else []


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


Q = config["quantize"]
GGUF_PPL_ARGS = " ".join(
    [
        f"--tasks {EV_FLAGS['ppl_datasets']} {EV_FLAGS['ppl_seq_len']}",
        f"{PPL_BLOCKS_ARG} {DATA_ARG}",
    ]
)
GGUF_SPEED_ARGS = (
    f"--prompt-len {SP['prompt_len']} --gen-len {SP['gen_len']} --warmup {SP['warmup']} --repeats {SP['repeats']}"
)


def exportable(method):
    """Whether llama.cpp runs the method's checkpoints (its format; SliceGPT and low-rank factors it cannot)."""
    return method == "dense" or METHODS.get(method).checkpoint in CHOICES.GGUF_FORMATS


def gguf_speed_files(model, method, setting_, ratio, type_):
    """The ``quantize.rounds`` whole llama.cpp speed runs of one exported file (first seed)."""
    w = dict(model=model, method=method, setting=setting_, ratio=ratio, seed=SEEDS[0], type=type_)
    return [rules.speed_gguf.output[0].format(round=k, **w) for k in range(Q["rounds"])]


def gguf_files(table):
    """The prune x quantize table's inputs: for dense and each quantize method that llama.cpp runs (first seed;
    quality and speed of one draw), each GGUF type's llama.cpp evaluation and ``rounds`` whole speed runs."""
    runs = [(m, "dense", NO_SETTING, "0") for m in MODELS]
    ratio = ratio_tag(Q["ratio"])
    methods = Q["methods"] or speed_methods()
    runs += [(m, meth, setting(meth, ratio), ratio) for m in MODELS for meth in methods if supported(m, meth)]
    runs = [run for run in runs if exportable(run[1])]
    out = []
    for m, meth, st, r in runs:
        for t in Q["types"]:
            out.append(
                rules.evaluate_gguf.output[0].format(model=m, method=meth, setting=st, ratio=r, seed=SEEDS[0], type=t)
            )
            out += gguf_speed_files(m, meth, st, r, t)
    return out


def speed_methods():
    """Table 9's methods: configured, else those of Table 2 and the baseline comparisons (as the sweep)."""
    return config["speed"]["methods"] or sweep_methods()


def speed_file(model, method, setting_, ratio, seed):
    return rules.speed.output[0].format(model=model, method=method, setting=setting_, ratio=ratio, seed=seed)


def speed_runs(model):
    """(method, setting, ratio) of Table 9's rows: dense and every Table 9 method at the speed ratios."""
    runs = [("dense", NO_SETTING, "0")]
    runs += [
        (m, setting(m, ratio_tag(r)), ratio_tag(r))
        for m in speed_methods()
        if supported(model, m)
        for r in config["speed"]["ratios"]
    ]
    return runs


def speed_files(model):
    """Table 9's PyTorch measurements, first seed (speed depends on shapes, not draws)."""
    return [speed_file(model, m, st, r, SEEDS[0]) for m, st, r in speed_runs(model)]


def table9_inputs(table):
    """Table 9's measurements: PyTorch's, and llama.cpp's of the speed.llamacpp type when one is configured."""
    out = [f for m in MODELS for f in speed_files(m)]
    if SP["llamacpp"]:
        runs = [(m, *run) for m in MODELS for run in speed_runs(m) if exportable(run[0])]
        out += [f for run in runs for f in gguf_speed_files(*run, SP["llamacpp"])]
    return out


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


def run_evals(table):
    """Dense and a table's methods at prune.ratios (unnamed methods: Table 2's runs, schedules included)."""
    return all_evals(None if spec(table).methods is None else table_methods(table))


def ablation_evals(table):
    """Dense and every variant's runs of an ablation table."""
    dense = [eval_file(m, "dense", NO_SETTING, "0", SEEDS[0]) for m in table_models(table)]
    return dense + [f for files in ablation_variants(table).values() for f in files]


def rft_table_evals(table):
    """The runs RFT starts from and their fine-tuned evaluations on the first or every RFT dataset."""
    datasets = RFT["datasets"][:1] if spec(table).rft == "first" else RFT["datasets"]
    return no_rft_evals() + rft_evals(datasets, [RFT["table_size"]])


INPUTS = {  # a spec's inputs kind -> (table -> its evaluation JSONs)
    "runs": run_evals,
    "ablation": ablation_evals,
    "transfer": lambda table: transfer_evals(),
    "speed": table9_inputs,
    "mmlu": mmlu_evals,
    "attention": attention_evals,
    "rft": rft_table_evals,
    "gguf": gguf_files,
}
# the optional config sections a table may need (TableSpec.needs): `all` builds it only when they are configured
BUILT = {
    "transfer": bool(TRANSFER),
    "rft": RFT_ENABLED,
    "large_model": bool(config.get("large_model")),
    "quantize": Q["in_all"],
}


def table_inputs(table):
    """Evaluation JSONs (or speed measurements) of a table, by its spec's kind of inputs."""
    return INPUTS[spec(table).inputs](table)


def sweep_methods():
    """The figure's methods: configured, else every method of Table 2 and of the baseline tables."""
    if SWEEP["methods"]:
        return SWEEP["methods"]
    compared = [m for t, sp in TABLE_SPECS.items() if sp.methods == "compare" for m in compare_methods(t)]
    return list(dict.fromkeys(PRUNE["methods"] + compared))


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
    """The tables `all` builds: every registered table in its spec order; the transfer table with transfer
    policies configured, the RFT tables with an rft section, Tables 14/15 with a large_model."""
    tables = [t for t, sp in TABLE_SPECS.items() if all(BUILT[n] for n in sp.needs)]
    return expand(rules.table.output.csv, table=tables)


def final_figures():
    """The figures `all` builds: Figure 1, the perplexity sweep and the speed-up figure per model; with RFT, Figures
    3/4."""
    out = expand(rules.fig1.output, model=MODELS) + expand(rules.ppl_vs_ratio.output.png, model=MODELS)
    out += expand(rules.speedup.output, model=MODELS)
    return out + (rules.fig3.output + rules.fig4.output if RFT_ENABLED else [])


def get_final_output():
    """What `all` builds: every table and figure, results/report.md, which lists them, and the settings table."""
    return final_tables() + final_figures() + rules.summary.output + [rules.settings.output.md]
