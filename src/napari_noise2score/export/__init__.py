"""Sharing models: the denoiser as TorchScript and bioimage.io model packages."""
