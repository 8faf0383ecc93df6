# PruneNet workflow entry point. Main job: snakemake --cores 1 results/tables/table2.csv
include: "workflow/Snakefile"
