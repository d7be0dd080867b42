"""`towers:` composed dual encoders: pretrained image and text backbones + trained heads.

TowersEncoder (PyTorch) is imported on first use: the ONNX Runtime path and the configs need
no torch (a cold `crossmodal search` pays for what the query needs only)."""

from crossmodal.models.towers.config import TowersConfig, find_tower_config, shipped_towers

__all__ = ["TowersConfig", "TowersEncoder", "find_tower_config", "shipped_towers"]


def __getattr__(name: str):
    if name == "TowersEncoder":
        from crossmodal.models.towers.encoder import TowersEncoder

        return TowersEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
