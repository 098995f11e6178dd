#!/usr/bin/env python3
"""Print the records of a Kafka topic: partition, offset, key, headers (exact bytes), value.

Reads every partition from the beginning by assignment (no consumer-group join, so no
rebalance wait), optionally keeps only one key, and stops at the timeout, after --count
matching records, or once --idle seconds pass without a new match after the first one.
Exit status: 0 if at least --min matching records were seen, 1 if not, 2 on errors.

Needs PyPI `confluent-kafka` (scripts/kafka-connect.sh installs it into its venv).

    consume.py outbox.event.job --key JOB_ID --timeout 30
"""

import argparse
import json
import os
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition


def murmur2(data: bytes) -> int:
    """Kafka's Java murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as a signed 32-bit int."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = length - rest
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    """The partition Java's default partitioner picks for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def text(b):
    if b is None:
        return None
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return repr(b)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("topic")
    p.add_argument("--brokers", default=os.environ.get("ORDO_KAFKA_BROKERS", "127.0.0.1:9092"))
    p.add_argument("--key", help="only records with this key")
    p.add_argument("--timeout", type=float, default=10.0, help="give up after this many seconds")
    p.add_argument("--idle", type=float, default=0.0,
                   help="after the first match, stop once this many seconds pass without another")
    p.add_argument("--count", type=int, default=0, help="stop after this many matching records")
    p.add_argument("--min", type=int, default=1, help="exit 1 unless at least this many matched")
    p.add_argument("--from-end", action="store_true", help="only records produced from now on")
    p.add_argument("--json", action="store_true", help="one JSON object per record")
    args = p.parse_args()

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        # Required by the client; never joined (assign, no subscribe) and never committed.
        "group.id": f"ordo-consume-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    })
    deadline = time.monotonic() + args.timeout
    try:
        partitions = None
        while partitions is None:
            md = consumer.list_topics(args.topic, timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            t = md.topics.get(args.topic)
            if t is not None and t.error is None and t.partitions:
                partitions = sorted(t.partitions)
            elif time.monotonic() >= deadline:
                print(f"topic {args.topic} not found within {args.timeout:g}s", file=sys.stderr)
                return 1
            else:
                time.sleep(0.5)
        start = OFFSET_END if args.from_end else OFFSET_BEGINNING
        consumer.assign([TopicPartition(args.topic, n, start) for n in partitions])
        expected = None
        if args.key is not None:
            expected = java_partition(args.key.encode(), len(partitions))
            if not args.json:
                print(f"# {args.topic}: {len(partitions)} partitions; key {args.key!r} -> "
                      f"partition {expected} by Java murmur2", flush=True)

        matched, last_match = 0, None
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if args.idle and last_match is not None and now - last_match >= args.idle:
                break
            msg = consumer.poll(min(0.5, deadline - now))
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            key = text(msg.key())
            if args.key is not None and key != args.key:
                continue
            matched += 1
            last_match = time.monotonic()
            headers = [(k, v) for k, v in (msg.headers() or [])]
            if args.json:
                print(json.dumps({
                    "partition": msg.partition(), "offset": msg.offset(), "key": key,
                    "headers": {k: text(v) for k, v in headers},
                    "value": text(msg.value()),
                }, ensure_ascii=False), flush=True)
            else:
                print(f"partition={msg.partition()} offset={msg.offset()} key={key!r}")
                for k, v in headers:
                    print(f"  header {k} = {v!r}")
                print(f"  value = {text(msg.value())}", flush=True)
            if expected is not None and msg.partition() != expected:
                print(f"warning: key {key!r} on partition {msg.partition()}, Java murmur2 says {expected}",
                      file=sys.stderr)
            if args.count and matched >= args.count:
                break
    except KafkaException as e:
        print(f"kafka error: {e}", file=sys.stderr)
        return 2
    finally:
        consumer.close()
    if not args.json:
        print(f"# {matched} matching record(s)", flush=True)
    return 0 if matched >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())
