"""Task columns and their printed labels, shared by every table module.

Why a module of its own: :mod:`.tables` builds tables with the comparisons of :mod:`.comparisons`, and both
print the same task labels; keeping the labels below both lets each import them downward (no cycle).
"""

from __future__ import annotations

TABLE2_TASKS = ["piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge"]  # paper Table 2
# The paper's task columns of its baseline tables, in its order (Table 4: LLaMA-2-7B, Table 5: LLaMA-1-7B).
PAPER_TASKS = {
    "table4": ["piqa", "hellaswag"],
    "table5": ["piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge"],
}
TASK_LABELS = {
    "piqa": "PIQA",
    "winogrande": "WinoGrande",
    "hellaswag": "HellaSwag",
    "arc_easy": "ARC-e",
    "arc_challenge": "ARC-c",
    "mmlu": "MMLU",
} | {  # paper Table 23's abbreviations of its ten subjects; other subjects keep their task name
    "mmlu_abstract_algebra": "Abs. Alg",
    "mmlu_business_ethics": "Bus. Eth.",
    "mmlu_college_computer_science": "Clg. CS.",
    "mmlu_college_mathematics": "Clg. Math",
    "mmlu_conceptual_physics": "Con. Phy.",
    "mmlu_formal_logic": "Frm. Log.",
    "mmlu_global_facts": "Glb. Fct.",
    "mmlu_machine_learning": "ML.",
    "mmlu_miscellaneous": "Misc.",
    "mmlu_philosophy": "Phil.",
}
