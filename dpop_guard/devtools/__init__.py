"""Development tools, never imported by the runtime (an import-linter contract checks it).

- :mod:`dpop_guard.devtools.simulator`: an Authlete-compatible authorization server for
  development, tests and benchmarks, switched on by name
  (``DPOP_GUARD_DEVELOPMENT_SIMULATOR=1``), never by a missing setting;
- :mod:`dpop_guard.devtools.demo`: the whole FAPI 2.0 flow on loopback
  (``python -m dpop_guard.devtools.demo``, ``make demo``);
- :mod:`dpop_guard.devtools.conformance`: what the OpenID Foundation's FAPI 2.0 suite sends
  a resource endpoint (``dpop-guard conformance``).

They ship in the same wheel as the runtime, in one version with it: ``dpop-guard simulate``
and ``dpop-guard conformance`` are operator commands, and users' own tests start the
simulator. A reader of the package meets the middleware first; these live apart, below.
"""
