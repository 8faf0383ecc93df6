"""Structured pruning shared by LLM-Pruner and LLM Surgeon: dependency groups, their scores, budgets and costs.

A regular package (it had no ``__init__``) so that tools that read the import graph, such as ``lint-imports``,
see its modules. Nothing is imported here: each method imports the modules it uses.
"""
