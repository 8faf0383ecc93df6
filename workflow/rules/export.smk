rule export:
    """One checkpoint as a GGUF file for llama.cpp (docs/export.md). Methods llama.cpp cannot run (SliceGPT,
    low-rank factors) fail with the one-line reason in the log."""
    input:
        lambda w: model_dir(w.model, w.method, w.ratio, w.setting, w.seed),
    output:
        "results/export/{model}/{method}/{setting}/r{ratio}-s{seed}.{type}.gguf",
    log:
        "results/logs/export/{model}/{method}/{setting}/r{ratio}-s{seed}.{type}.log",
    benchmark:
        "results/benchmarks/export/{model}/{method}/{setting}/r{ratio}-s{seed}.{type}.tsv"
    wildcard_constraints:
        type=alternatives(CHOICES.GGUF_TYPES),
    conda:
        CONDA_ENV
    resources:
        **compute_resources(gpu=False),  # llama.cpp's file, written on the CPU
    params:
        py=PY,
    shell:
        "{params.py} -m prunenet export {input} --format gguf --type {wildcards.type} --out {output} > {log} 2>&1"


rule evaluate_gguf:
    """Perplexity of an exported GGUF file computed by llama.cpp, on the evaluation's blocks (the checkpoint's
    tokenizer cuts them) -> JSON with the file's type and size (docs/export.md)."""
    input:
        gguf=rules.export.output[0],
        checkpoint=lambda w: model_dir(w.model, w.method, w.ratio, w.setting, w.seed),
    output:
        "results/eval_gguf/{model}/{method}/{setting}/r{ratio}-s{seed}.{type}.json",
    log:
        "results/logs/eval_gguf/{model}/{method}/{setting}/r{ratio}-s{seed}.{type}.log",
    benchmark:
        "results/benchmarks/eval_gguf/{model}/{method}/{setting}/r{ratio}-s{seed}.{type}.tsv"
    wildcard_constraints:
        type=alternatives(CHOICES.GGUF_TYPES),
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **compute_resources(gpu=False),
    params:
        py=PY,
        args=GGUF_PPL_ARGS,
    shell:
        "{params.py} -m prunenet evaluate --backend llamacpp --model {input.gguf} --tokenizer {input.checkpoint} "
        "--model-name {wildcards.model} --method {wildcards.method} --setting {wildcards.setting} --out {output} "
        "{params.args} > {log} 2>&1"


rule speed_gguf:
    """Decode and prefill tokens/s of a GGUF file in llama.cpp, one whole run of the speed protocol at batch 1
    (round {round}: the table's speed-up CI spans rounds). Every core, so it runs alone."""
    input:
        rules.export.output[0],
    output:
        "results/speed_gguf/{model}/{method}/{setting}/r{ratio}-s{seed}.{type}.run{round}.json",
    log:
        "results/logs/speed_gguf/{model}/{method}/{setting}/r{ratio}-s{seed}.{type}.run{round}.log",
    benchmark:
        "results/benchmarks/speed_gguf/{model}/{method}/{setting}/r{ratio}-s{seed}.{type}.run{round}.tsv"
    wildcard_constraints:
        type=alternatives(CHOICES.GGUF_TYPES),
        round=r"\d+",
    conda:
        CONDA_ENV
    threads: speed_threads()
    resources:
        **compute_resources(gpu=False),
    params:
        py=PY,
        args=GGUF_SPEED_ARGS,
    shell:
        "{params.py} -m prunenet speed --backend llamacpp --model {input} --model-name {wildcards.model} "
        "--method {wildcards.method} --setting {wildcards.setting} --out {output} {params.args} > {log} 2>&1"
