"""Dynamic tags: follow a `--tags-file` and send the worker's new tag set to the server
whenever the file changes (the file itself is read by `tagsfile.py`)."""

from __future__ import annotations

import asyncio
import logging

from kickoff import defaults
from kickoff.errors import InvalidInput, KickoffError
from kickoff.worker.core import LOST, Core
from kickoff.worker.session import Session
from kickoff.worker.tagsfile import TagsFile

logger = logging.getLogger(__name__)


class TagsSync:
    """Keeps the server's tags of this worker in step with its tags file."""

    def __init__(self, core: Core, session: Session, tags_file: TagsFile) -> None:
        self.core = core
        self.session = session
        self.tags_file = tags_file

    async def loop(self) -> None:
        while True:
            try:
                await self.step()
            except Exception:
                logger.exception("tags update failed")
            await asyncio.sleep(defaults.TAGS_POLL_S)

    async def step(self) -> None:
        """Re-read the tags file if it changed; send the new tag set to the server."""
        core, session = self.core, self.session
        try:
            changed = self.tags_file.poll()
            if changed is not None:
                core.tags(changed)  # refuse a file that makes too many tags
                core.file_tags = changed
        except (InvalidInput, OSError) as exc:
            logger.error("ignoring the tags file %s: %s", self.tags_file.path, exc)
            return
        reg = core.registration
        tags = core.tags()
        if reg is None or tags == session.sent_tags:
            return
        path = f"/v1/workers/{reg.worker_id}/tags"
        try:
            await core.call("POST", path, what="tags update", json={"set": sorted(tags)})
        except LOST as exc:
            session.lost(reg, "tags update", exc.message)
            return
        except KickoffError as exc:  # not retried until the file changes again
            logger.error("the server refused the tags %s: %s", ",".join(sorted(tags)), exc.message)
        else:
            logger.info("tags of worker=%s now %s", reg.worker_id, ",".join(sorted(tags)) or "-")
        if reg is core.registration:
            session.sent_tags = tags
