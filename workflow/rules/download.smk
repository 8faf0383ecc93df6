rule download_model:
    """Resolve the configured spec (embedded GGUF by default) into a local safetensors checkpoint."""
    output:
        directory("resources/models/{model}"),
    log:
        "results/logs/download/{model}.log",
    benchmark:
        "results/benchmarks/download/{model}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **compute_resources(gpu=False),
    params:
        py=PY,
        spec=lambda w: config["models"][w.model],
    shell:
        "{params.py} -m prunenet download --model {params.spec:q} --model-name {wildcards.model} "
        "--dtype float32 --out {output} > {log} 2>&1"
