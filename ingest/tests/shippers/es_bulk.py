"""The official Elasticsearch Python client (8.x) and its helpers.bulk, pointed at /es."""
import sys

from elasticsearch import Elasticsearch, helpers

es = Elasticsearch(sys.argv[1] + "/es", headers={"x-ordo-tenant": "acme"}, request_timeout=10)
assert es.info()["version"]["number"].startswith("8."), es.info()
docs = [
    {"_index": "web", "_id": "r1", "_source": {
        "@timestamp": "2026-11-21T10:00:00.250Z", "message": "GET /cart 200",
        "log": {"level": "info"}, "http": {"response": {"status_code": 200}}}},
    {"_op_type": "create", "_index": "web", "_source": {
        "message": "upstream timeout", "log.level": "ERROR", "service.name": "gateway",
        "host": {"name": "edge-1"}, "trace.id": "5b8efff798038103d269b633813fc60c"}},
]
ok, errors = helpers.bulk(es, docs)
assert ok == 2 and not errors, (ok, errors)
print(ok)
