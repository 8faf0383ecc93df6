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
        p=lambda w: policy_args(w.policy),
        episodes=POL["episodes"],
        gamma=POL["gamma"],
        lr=POL["lr"],
        eval_samples=POL["eval_samples"],
    shell:
        "{params.py} -m prunenet train --model {input} --model-name {wildcards.model} "
        "--out {output.policy} --meta-out {output.meta} "
        "--ratio {params.p[ratio]} --penalty {params.p[penalty]} --state {params.p[state]} "
        "--objective {params.p[objective]} --eq3 {params.p[eq3]} --baseline {params.p[baseline]} "
        "--samples {params.p[samples]} --seed {wildcards.seed} --episodes {params.episodes} --gamma {params.gamma} "
        "--lr {params.lr} --eval-samples {params.eval_samples} --device {params.device} > {log} 2>&1"
