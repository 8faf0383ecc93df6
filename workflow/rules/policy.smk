rule train_policy:
    """REINFORCE policy learning on the FFN weights only (no calibration data)."""
    input:
        rules.download_model.output,
    output:
        policy="results/policies/{model}/{policy}/s{seed}.safetensors",
        meta="results/policies/{model}/{policy}/s{seed}.json",
    log:
        "results/logs/train_policy/{model}/{policy}/s{seed}.log",
    benchmark:
        "results/benchmarks/train_policy/{model}/{policy}/s{seed}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **compute_resources(),
    params:
        py=PY,
        device=config["device"],
        policy=lambda w: " ".join(filter(None, (PolicySpec.parse(w.policy).train_args, DTYPE_ARG))),
        episodes=POL["episodes"],
        gamma=POL["gamma"],
        lr=lambda w: PolicySpec.parse(w.policy).lr,
        eval_samples=POL["eval_samples"],
    shell:
        "{params.py} -m prunenet train --model {input} --model-name {wildcards.model} "
        "--out {output.policy} --meta-out {output.meta} {params.policy} --seed {wildcards.seed} "
        "--episodes {params.episodes} --gamma {params.gamma} --lr {params.lr} --eval-samples {params.eval_samples} --device {params.device} > {log} 2>&1"
