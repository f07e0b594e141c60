"""The benchmarked server: production settings, plus ``/bench/bare`` (see ``benchmarks.urls``).

Everything else is production's, read from the environment the runner prepares, so the figures are those of the
deployed configuration.
"""

from config.settings.production import *  # noqa: F403

ROOT_URLCONF = "benchmarks.urls"
# What production refuses, and the benchmarks need: a webhook receiver on loopback, and simulated networks.
WEBHOOK_ALLOW_LOOPBACK = True
TSP_SIMULATOR = True
SECURE_SSL_REDIRECT = False  # the load comes over plain HTTP on loopback
