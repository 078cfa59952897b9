"""Parity fixtures and manifests of the generation side (issue 4): MM-DiT, sampler, VAE, BigVGAN, mel."""


def fixtures(ctx):
    pass


def manifests(ctx):
    pass
