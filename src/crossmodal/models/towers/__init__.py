"""`towers:` composed dual encoders: pretrained image and text backbones + trained heads."""

from crossmodal.models.towers.config import TowersConfig, find_tower_config, shipped_towers
from crossmodal.models.towers.encoder import TowersEncoder

__all__ = ["TowersConfig", "TowersEncoder", "find_tower_config", "shipped_towers"]
