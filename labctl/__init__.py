"""labctl — a self-hosted LLM lab (kubeadm, Calico, MetalLB, NFS, Ollama, Open WebUI) from one command."""

import os

__version__ = "0.1.0"

# labctl uses no pydantic plugins. Without this, pydantic's first model reads the entry points of every
# installed distribution to look for plugins: 2 ms in a pipx venv, 4-8 ms with ~130 packages, more in
# a big shared site-packages. PYDANTIC_DISABLE_PLUGINS is pydantic's documented switch (docs: "Pydantic
# Plugins" → "Disabling Plugins"); it only skips plugins, validation is unchanged. setdefault: a value
# the user sets (even an empty one, which turns plugins back on) wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
