// winston-loki: Loki's protobuf push, snappy-compressed (json: false, snappy installed).
const { createLogger } = require('winston')
const LokiTransport = require('winston-loki')

require('snappy') // fail here, not by a silent fallback to JSON, if the binary is missing
const transport = new LokiTransport({
  host: process.argv[2],
  json: false,
  labels: { app: 'frontend', env: 'prod' },
  headers: { 'x-ordo-tenant': 'acme' },
  onConnectionError: (error) => { console.error(error); process.exitCode = 1 }
})
if (transport.batcher.contentType !== 'application/x-protobuf') {
  throw new Error(`winston-loki would send ${transport.batcher.contentType}, not protobuf`)
}
const logger = createLogger({ transports: [transport] })
logger.info('page rendered')
logger.error('hydration failed', { route: '/cart' })
transport.flush().then(() => transport.close()).then(() => process.exit())
