#!/usr/bin/env python3
"""RR-CBP2 on the bit-flipping inputs (README, "Continual backprop and rank restoring"): how far one flip moves a new
unit's pre-activation. Sigma = EMA of x x^T (beta 0.99, 1000 steps) over inputs whose 15 flipping bits are
constant and 5 bits random, + ridge 1e-4, eigenvalues floored at 1e-6 (algos/src/continual/rank_restoring.rs);
w = (I - P)u / ||(I - P)u||_Sigma against 4 kept units, computed whitened as there. On the current inputs the
spread of w.x is ||w||_Sigma = 1 at most; a flip of bit i adds +-w_i. Needs numpy."""
import numpy as np
rng = np.random.default_rng(0)
ratios = []
for trial in range(200):
    const = rng.integers(0, 2, 15).astype(float)
    S = np.zeros((20, 20))
    for t in range(1000):
        x = np.concatenate([const, rng.integers(0, 2, 5).astype(float)])
        S = 0.99 * S + 0.01 * np.outer(x, x)
    S = (S + S.T) / 2 + 1e-4 * np.eye(20)
    lam, E = np.linalg.eigh(S)
    lam = np.maximum(lam, 1e-6)
    Sh = E @ np.diag(lam ** 0.5) @ E.T
    Smh = E @ np.diag(lam ** -0.5) @ E.T
    V = rng.uniform(-1, 1, (20, 4)) / np.sqrt(20)
    Q, _ = np.linalg.qr(Sh @ V)
    u = rng.standard_normal(20)
    r = Sh @ u
    r = r - Q @ (Q.T @ r)
    w = Smh @ r / np.linalg.norm(r)
    # spread of w.x over the current distribution is ~ ||w||_Sigma = 1; a flip of bit i adds +-w_i
    ratios.append(np.abs(w[:15]).max())
ratios = np.array(ratios)
print(f"max over flipping bits of |w_i| (the pre-activation jump of a flip; its spread on current inputs is <= 1):")
print(f"median {np.median(ratios):.1f}, 90th percentile {np.percentile(ratios, 90):.1f}, max {ratios.max():.1f}")
