"""The base config: iresnet50, CosFace (s=64, m=0.35), SGD 0.1 with warm-up and cosine decay."""

from toolkit.training.config import TrainConfig

config = TrainConfig()
