"""The on-disk checkpoint: a snapshot document plus an append-only journal of acknowledged commits.

``CheckpointStore`` is what the agent uses (``agent.checkpoint.store`` explains the design);
``StreamState`` is one stream's acknowledged progress; ``CheckpointFiles`` names the files of one
checkpoint from a prefix.
"""

from __future__ import annotations

from agent.checkpoint.files import CheckpointFiles
from agent.checkpoint.snapshot import VERSION
from agent.checkpoint.state import StreamState
from agent.checkpoint.store import CheckpointStore

__all__ = ["VERSION", "CheckpointFiles", "CheckpointStore", "StreamState"]
