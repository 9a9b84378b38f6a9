"""Where a row or a model came from: the names every runtime writes and reads back."""

from __future__ import annotations

#: Rows exported from human corrections carry this id prefix before the feedback id.
FEEDBACK_ID_PREFIX = "feedback-"
