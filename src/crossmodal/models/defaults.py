"""The default model ids (imports nothing: every layer may read them)."""

# The model a command uses when none is named (index, demo, eval-sts, Collection.create):
# the best shipped one, reading English and Chinese (crossmodal/models/fusions/bilingual.toml).
# Named by what it is, not by its role, so a better default later is a new id and indexes
# built with this one still open.
DEFAULT_MODEL = "fusion:bilingual"
# Where one tower is needed (ONNX export, heat maps): the fastest shipped tower.
DEFAULT_TOWER = "towers:lite-en"
