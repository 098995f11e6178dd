"""python-logging-loki's handler: Loki's JSON push (version 1 of its payload)."""
import logging
import sys

import logging_loki

handler = logging_loki.LokiHandler(
    url=sys.argv[1] + "/loki/api/v1/push", tags={"app": "billing"}, version="1"
)
log = logging.getLogger("billing")
log.setLevel(logging.INFO)
log.addHandler(handler)
log.info("invoice sent")
log.warning("invoice overdue", extra={"tags": {"customer": "ada"}})
