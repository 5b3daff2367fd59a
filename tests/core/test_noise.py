"""Tweedie steps against exact posterior means where the prior makes them closed-form."""

import numpy as np
import pytest
from scipy.special import digamma

from napari_noise2score.core.errors import Noise2ScoreError
from napari_noise2score.core.noise import NoiseParams, simulate, tweedie


def test_gaussian_prior_gaussian_noise_is_exact():
    m, t, sigma = 0.4, 0.2, 0.1
    y = np.linspace(-0.5, 1.5, 201)
    score = -(y - m) / (t**2 + sigma**2)  # the noisy marginal is N(m, t^2 + sigma^2)
    exact = m + t**2 / (t**2 + sigma**2) * (y - m)
    got = tweedie(y, score, NoiseParams("gaussian", sigma=sigma))
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-12)


def test_gaussian_smoothing_adds_to_the_variance():
    # a score learned with perturbation s describes noise of variance sigma^2 + s^2
    m, t, sigma, s = 0.0, 0.3, 0.1, 0.05
    y = np.linspace(-1, 1, 11)
    score = -(y - m) / (t**2 + sigma**2 + s**2)
    exact = m + t**2 / (t**2 + sigma**2 + s**2) * (y - m)
    got = tweedie(y, score, NoiseParams("gaussian", sigma=sigma), smoothing=s)
    np.testing.assert_allclose(got, exact, atol=1e-12)


def test_gamma_prior_poisson_noise_matches_posterior():
    # lambda ~ Gamma(alpha, rate beta), c ~ Poisson(lambda): posterior Gamma(alpha + c, beta + 1)
    alpha, beta, zeta = 6.0, 0.2, 1.0
    c = np.arange(5, 200, dtype=np.float64)
    # d/dc log p(c) of the negative-binomial marginal, continued to real c
    score = digamma(alpha + c) - digamma(c + 1) - np.log(beta + 1)
    got = tweedie(c, score, NoiseParams("poisson", gain=zeta))
    # exact geometric posterior mean exp(E[log lambda | c]), and the posterior mean
    geometric = np.exp(digamma(alpha + c)) / (beta + 1)
    mean = (alpha + c) / (beta + 1)
    # the formula replaces digamma(c + 1) by log(c + 1/2): error O(1/c^2) relative
    np.testing.assert_allclose(got, geometric, rtol=2e-3)
    # and it sits half a count below the arithmetic posterior mean
    np.testing.assert_allclose(mean - got, 0.5 / (beta + 1), atol=0.05)


def test_inverse_gamma_prior_gamma_noise_is_exact():
    # x ~ InvGamma(alpha, beta), y = x * Gamma(k, 1/k): posterior InvGamma(alpha + k, k y + beta).
    # Tweedie gives the natural-parameter mean, i.e. x_hat = 1 / E[1/x | y] exactly.
    alpha, beta, k = 4.0, 1.5, 50.0
    y = np.linspace(0.05, 3.0, 60)
    score = (k - 1) / y - k * (alpha + k) / (k * y + beta)
    exact = (k * y + beta) / (alpha + k)
    got = tweedie(y, score, NoiseParams("gamma", shape=k))
    np.testing.assert_allclose(got, exact, rtol=1e-10)


@pytest.mark.parametrize("mode", ["gaussian-then-poisson", "affine"])
def test_poisson_gaussian_reduces_to_poisson_without_read_noise(mode):
    c = np.linspace(3, 100, 50)
    score = np.linspace(-0.2, 0.2, 50)
    pg = tweedie(c, score, NoiseParams("poisson-gaussian", sigma=0.0, gain=1.0), mixed_mode=mode)
    p = tweedie(c, score, NoiseParams("poisson", gain=1.0))
    # gaussian-then-poisson is the Poisson row exactly; the affine form to O(1/c)
    np.testing.assert_allclose(pg, p, rtol=1e-12 if mode != "affine" else 0.02)


def test_poisson_gaussian_tends_to_gaussian_for_tiny_gain():
    y = np.linspace(0.2, 0.8, 20)
    score = np.linspace(-3, 3, 20)
    sigma = 0.05
    g = tweedie(y, score, NoiseParams("gaussian", sigma=sigma))
    for mode in ("gaussian-then-poisson", "affine"):
        pg = tweedie(y, score, NoiseParams("poisson-gaussian", sigma=sigma, gain=1e-7),
                     mixed_mode=mode)
        np.testing.assert_allclose(pg, g, atol=1e-5)


def test_simulation_statistics_and_no_clipping():
    x = np.full((200, 200), 0.5)
    g = simulate(x, NoiseParams("gaussian", sigma=0.2), seed=1)
    assert abs(g.std() - 0.2) < 0.005 and g.max() > 1.0 and g.min() < 0.0
    p = simulate(x, NoiseParams("poisson", gain=0.01), seed=1)
    assert abs(p.mean() - 0.5) < 0.002 and abs(p.var() - 0.5 * 0.01) < 2e-4
    m = simulate(x, NoiseParams("gamma", shape=100.0), seed=1)
    assert abs(m.mean() - 0.5) < 0.002 and abs(m.std() - 0.05) < 0.002
    pg = simulate(x, NoiseParams("poisson-gaussian", gain=0.01, sigma=0.05), seed=1)
    assert abs(pg.var() - (0.5 * 0.01 + 0.05**2)) < 3e-4


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(model="gaussian"), "needs the sigma parameter"),
        (dict(model="gaussian", sigma=0.0), "sigma must be > 0"),
        (dict(model="gaussian", sigma=-1.0), "sigma must be > 0"),
        (dict(model="gamma", shape=1.0), "k must be > 1"),
        (dict(model="poisson", gain=0.0), "gain must be > 0"),
        (dict(model="poisson-gaussian", gain=1.0, sigma=-0.1), ">= 0"),
        (dict(model="gaussian", sigma=float("nan")), "finite"),
    ],
)
def test_impossible_parameters_are_refused(params, message):
    with pytest.raises(Noise2ScoreError, match=message):
        NoiseParams(**params).validate()


def test_unknown_noise_model_is_refused():
    with pytest.raises(Noise2ScoreError, match="unknown noise model 'speckle'"):
        NoiseParams("speckle")
