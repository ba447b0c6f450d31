"""Server-side conversations for /qa: `conversation_id` -> `rsrag.rag.Conversation`, bounded and expiring.

At most `max_conversations` are kept (the least recently used goes first) and one idle for `ttl_s`
seconds is forgotten, so a client that never comes back costs nothing for long. A conversation keeps
at most its last 20 turns and one image in focus (capped at 1,024 px on its long side), so its memory
is bounded too.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from rsrag.rag import Conversation

MAX_FOCUS_SIDE = 1024


class ConversationStore:
    def __init__(self, max_conversations: int = 256, ttl_s: float = 3600.0) -> None:
        self.max_conversations, self.ttl_s = max_conversations, ttl_s
        self._items: OrderedDict[str, Conversation] = OrderedDict()
        self._lock = threading.Lock()

    def start(self) -> Conversation:
        conversation = Conversation()
        with self._lock:
            self._expire()
            self._items[conversation.id] = conversation
            while len(self._items) > self.max_conversations:
                self._items.popitem(last=False)
        return conversation

    def get(self, conversation_id: str) -> Conversation | None:
        """The conversation, or None when it is unknown or has expired."""
        with self._lock:
            self._expire()
            conversation = self._items.get(conversation_id)
            if conversation is not None:
                self._items.move_to_end(conversation_id)
            return conversation

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, c in self._items.items() if now - c.updated > self.ttl_s]:
            del self._items[key]
