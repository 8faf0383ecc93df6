rule train_policy:
    """REINFORCE policy learning on the FFN weights only (no calibration data)."""
    input:
        "resources/models/{model}",
    output:
        policy="results/policies/{model}/{policy}.safetensors",
        meta="results/policies/{model}/{policy}.json",
    params:
        p=lambda w: policy_args(w.policy),
        episodes=POL["episodes"],
        gamma=POL["gamma"],
        lr=POL["lr"],
    log:
        "results/logs/train_policy/{model}/{policy}.log",
    benchmark:
        "results/benchmarks/train_policy/{model}/{policy}.tsv"
    shell:
        "{PY} -m prunenet train --model {input} --model-name {wildcards.model} --out {output.policy} "
        "--ratio {params.p[ratio]} --penalty {params.p[penalty]} --state {params.p[state]} "
        "--objective {params.p[objective]} --baseline {params.p[baseline]} --samples {params.p[samples]} --seed {params.p[seed]} "
        "--episodes {params.episodes} --gamma {params.gamma} --lr {params.lr} --device {config[device]} > {log} 2>&1"
