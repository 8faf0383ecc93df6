rule train_policy:
    """REINFORCE policy learning on the FFN weights only (no calibration data)."""
    input:
        rules.download_model.output,
    output:
        policy="results/policies/{model}/{policy}.safetensors",
        meta="results/policies/{model}/{policy}.json",
    log:
        "results/logs/train_policy/{model}/{policy}.log",
    benchmark:
        "results/benchmarks/train_policy/{model}/{policy}.tsv"
    conda:
        CONDA_ENV
    params:
        py=PY,
        device=config["device"],
        p=lambda w: policy_args(w.policy),
        episodes=POL["episodes"],
        gamma=POL["gamma"],
        lr=POL["lr"],
    shell:
        "{params.py} -m prunenet train --model {input} --model-name {wildcards.model} "
        "--out {output.policy} --meta-out {output.meta} "
        "--ratio {params.p[ratio]} --penalty {params.p[penalty]} --state {params.p[state]} "
        "--objective {params.p[objective]} --baseline {params.p[baseline]} --samples {params.p[samples]} "
        "--seed {params.p[seed]} --episodes {params.episodes} --gamma {params.gamma} --lr {params.lr} "
        "--device {params.device} > {log} 2>&1"
