"""An agent's door: a Model Context Protocol server over one index (`crossmodal mcp IDX`)."""
