"""labctl — a self-hosted LLM lab (kubeadm, Calico, MetalLB, NFS, Ollama, Open WebUI) from one command."""

__version__ = "0.1.0"
