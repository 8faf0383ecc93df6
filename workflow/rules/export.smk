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
