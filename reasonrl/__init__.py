"""reasonrl: reinforcement learning for reasoning language models (GRPO + LoRA, CPU to cluster).

Kept free of heavy imports: reward worker processes import reasonrl.types and reasonrl.rewards only.
"""

__version__ = "0.1.0"
