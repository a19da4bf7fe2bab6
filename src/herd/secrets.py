"""Secrets derived from the cluster key, so every node computes the same ones and none is ever written in
the spec or sent on the wire."""

from __future__ import annotations

import hashlib
import hmac


def derive(key: bytes, purpose: str, length: int = 24) -> str:
    return hmac.new(key, f"herd:{purpose}".encode(), hashlib.sha256).hexdigest()[:length]


def db_password(key: bytes, user: str) -> str:
    return derive(key, f"db-password:{user}")
