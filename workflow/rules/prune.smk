rule prune:
    """Physically slice every FFN with the trained policy (prunenet), its top-k (deterministic) or random rows."""
    input:
        model="resources/models/{model}",
        policy=lambda w: [] if w.method == "random" else policy_file(w.model),
    output:
        directory("results/models/{model}/{method}/r{ratio}"),
    wildcard_constraints:
        method=r"prunenet|deterministic|random",
    params:
        policy=lambda w, input: f"--policy {input.policy}" if input.policy else "",
        ratio=lambda w: ratio_arg(w.ratio),
    log:
        "results/logs/prune/{model}/{method}/r{ratio}.log",
    benchmark:
        "results/benchmarks/prune/{model}/{method}/r{ratio}.tsv"
    shell:
        "{PY} -m prunenet prune --model {input.model} --model-name {wildcards.model} --out {output} "
        "--method {wildcards.method} --ratio {params.ratio} {params.policy} --which {POL[which]} "
        "--seed {config[seed]} --device {config[device]} > {log} 2>&1"


rule slicegpt:
    """SliceGPT baseline: PCA rotations from calibration data, then delete embedding dimensions."""
    input:
        "resources/models/{model}",
    output:
        directory("results/models/{model}/slicegpt/r{ratio}"),
    wildcard_constraints:
        ratio=r"[0-9]+(\.[0-9]+)?",
    params:
        sg=config.get("slicegpt", {}),
    log:
        "results/logs/slicegpt/{model}/r{ratio}.log",
    benchmark:
        "results/benchmarks/slicegpt/{model}/r{ratio}.tsv"
    shell:
        "{PY} -m prunenet slicegpt --model {input} --model-name {wildcards.model} --out {output} "
        "--ratio {wildcards.ratio} --calib-dataset {params.sg[calib_dataset]} --calib-samples {params.sg[calib_samples]} "
        "--calib-seq-len {params.sg[calib_seq_len]} {DATA_ARG} --seed {config[seed]} --device {config[device]} > {log} 2>&1"
