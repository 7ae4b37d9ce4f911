"""Evaluation of LDM checkpoints (`python -m diffariff_jax.eval`; docs/evaluation.md).

examples (fixed test examples), conditions (the paper's rows), baselines, scoring (metrics + bootstrap
intervals), cache (real-data embeddings), evaluate (the stages), plots, html, outputs, report, run.
"""
