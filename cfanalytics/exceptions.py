"""The kit's own exception types: one line each, never a traceback for the user."""

from __future__ import annotations


class CfError(Exception):
    """Base class of every error the kit raises on purpose.

    The message is a single line meant for the user, e.g.
    ``exports/pb.csv: record 7: 'Postback Time' is not a time``.
    """

    exit_code: int = 1


class InputError(CfError):
    """An input file (or frame) cannot be read at all; nothing of it is written."""

    exit_code = 1


class UsageError(CfError):
    """Wrong arguments: unknown kind, a refused time zone, a bad ``--map``."""

    exit_code = 2


class StoreBusyError(CfError):
    """The store's lock stayed taken by another writer after all retries."""

    exit_code = 4


class StoreError(CfError):
    """The store folder is not a store, or its metadata is unreadable."""

    exit_code = 1
