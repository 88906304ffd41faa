"""The bound on Integrated Gradients steps that every IG backend (tabular, text, LLM) applies."""

from __future__ import annotations

from infertap.explainers.errors import BadExplainRequest

#: Gauss-Legendre nodes for n steps cost O(n^3) in numpy (leggauss(2000) 0.7 s, (5000) 20 s), computed per
#: captum call and not interruptible by the deadline: more steps than this need a Riemann method.
MAX_GAUSS_LEGENDRE_STEPS = 1000


def check_ig_steps(explainer: str, n_steps: int, method: str) -> None:
    """BadExplainRequest for more Gauss-Legendre steps than MAX_GAUSS_LEGENDRE_STEPS."""
    if method == "gausslegendre" and n_steps > MAX_GAUSS_LEGENDRE_STEPS:
        raise BadExplainRequest(
            f"{explainer}: nsamples (n_steps) {n_steps} with method gausslegendre; at most "
            f"{MAX_GAUSS_LEGENDRE_STEPS} (its nodes take O(n^3) to compute), or set params.method="
            '"riemann_trapezoid" for more steps'
        )
