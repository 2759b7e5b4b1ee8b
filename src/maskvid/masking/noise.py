"""BERT's noisy masking for token inputs (VIMPAC App. G.3): of the masked positions, 80% become [MASK], 10% a
random token and 10% stay unchanged. Works with the mask of any strategy."""

from __future__ import annotations

import torch

from maskvid.errors import ConfigError, InputError


def bert_noise(
    tokens: torch.Tensor,
    mask: torch.Tensor,
    mask_token: int,
    vocab_size: int,
    generator: torch.Generator | None = None,
    probs: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> torch.Tensor:
    """Corrupt ``tokens`` at ``mask``.

    Args:
        tokens: integer token ids, any shape (e.g. ``(B, N)`` or ``(T', H', W')``).
        mask: bool, same shape, True = masked.
        mask_token: the [MASK] id (usually ``vocab_size``, one past the codebook).
        vocab_size: random replacements are drawn uniformly from ``[0, vocab_size)``.
        probs: (to [MASK], to a random token, unchanged) for each masked position; must sum to 1.
    Returns:
        A new tensor like ``tokens``; unmasked positions are untouched.
    """
    if tokens.shape != mask.shape or mask.dtype != torch.bool:
        raise InputError("mask", f"need a bool mask shaped like the tokens {tuple(tokens.shape)}, got "
                          f"{mask.dtype} {tuple(mask.shape)}")
    if len(probs) != 3 or min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6:
        raise ConfigError("mask.noise_probs", f"three non-negative probabilities summing to 1, got {probs}")
    if vocab_size < 1:
        raise ConfigError("mask.vocab_size", f"must be >= 1, got {vocab_size}")
    device = generator.device if generator is not None else tokens.device
    draw = torch.rand(tokens.shape, generator=generator, device=device).to(tokens.device)
    random_tokens = torch.randint(vocab_size, tokens.shape, generator=generator, device=device).to(tokens)
    to_mask = mask & (draw < probs[0])
    to_random = mask & (draw >= probs[0]) & (draw < probs[0] + probs[1])
    out = torch.where(to_random, random_tokens, tokens)
    return out.masked_fill(to_mask, mask_token)
