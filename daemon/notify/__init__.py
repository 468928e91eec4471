"""Hooks and notifications, delivered through a durable outbox in the journal.

* ``section.py``: the ``[notify]`` config section and the topic names (imported by
  ``daemon.config``: this package's ``__init__`` stays empty of imports).
* ``outbox.py``: the ``outbox`` table: rows written in the job change's own transaction,
  delivered with attempts, ``next_at``, backoff and the last error.
* ``messages.py``: PURE: what a hook's environment and a notification's text say.
* ``hooks.py``: one hook run (argv, no shell; timeout; output into the log).
* ``sender.py``: notification URLs through apprise (the optional ``[notify]`` extra).
* ``summary.py``: the daily summary: when it is due (PURE) and what it counts.
* ``runner.py``: :class:`~daemon.notify.runner.Notifications`: the journal taps and the two
  delivery threads (hooks, notifications), off the engine's step threads.
"""
