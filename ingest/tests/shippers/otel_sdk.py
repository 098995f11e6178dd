"""The OpenTelemetry Python SDK's logging bridge and OTLP/HTTP protobuf exporter, configured
only by the standard environment (OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, _COMPRESSION,
OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES), as the README tells users to."""
import logging

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

resource = Resource.create()
provider = LoggerProvider(resource=resource)
provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
trace.set_tracer_provider(TracerProvider(resource=resource))

log = logging.getLogger("shop.payments")
log.setLevel(logging.DEBUG)
log.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=provider))

log.debug("cart loaded")
with trace.get_tracer("shop").start_as_current_span("charge") as span:
    log.warning("card declined", extra={"order_id": 42, "amount": 9.5})
    context = span.get_span_context()
    print(f"{context.trace_id:032x} {context.span_id:016x}")
log.critical("payment service down")
provider.force_flush()
provider.shutdown()
