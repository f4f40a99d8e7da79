// Publish one message to a tracedq actor from Node.js, so the worker's `process <queue>` span continues
// this process's trace (docs/wire-format.md).
//
//   npm ci
//   node publish.js users register_user \
//     '{"schema_version": 1, "user_id": "u-1", "email": "ada@example.com", "name": "Ada"}'
//
// AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/) names the broker; the span goes to the OTLP/HTTP
// collector at OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318). On success it prints one JSON
// line: {"trace_id", "span_id", "message_id"}. Exit 1 when RabbitMQ returns the message (no such queue),
// exit 2 on a usage error.
'use strict';

const { randomUUID } = require('node:crypto');
const amqp = require('amqplib');
const { context, propagation, trace, SpanKind, SpanStatusCode } = require('@opentelemetry/api');
const { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } = require('@opentelemetry/core');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { BatchSpanProcessor, NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');

function usage(problem) {
  process.stderr.write(`usage: node publish.js QUEUE ACTOR_NAME PAYLOAD_JSON\nerror: ${problem}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  if (argv.length !== 3) usage(`expected 3 arguments, got ${argv.length}`);
  const [queue, actorName, payloadJson] = argv;
  let payload;
  try {
    payload = JSON.parse(payloadJson);
  } catch (error) {
    usage(`PAYLOAD_JSON is not JSON: ${error.message}`);
  }
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
    usage('PAYLOAD_JSON must be a JSON object (the actor payload, see docs/schemas/)');
  }
  return { queue, actorName, payload };
}

// register() is what makes propagation work: it installs the W3C propagators as the global propagator
// (the API's default one is a no-op that writes nothing) and an AsyncLocalStorage context manager (without
// one, context.active() is always the empty root context, even inside startActiveSpan).
function startTracing() {
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': process.env.OTEL_SERVICE_NAME || 'node-producer' }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  provider.register({
    propagator: new CompositePropagator({
      propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
    }),
  });
  return provider;
}

// The carrier is injected from a context that holds the send span explicitly (trace.setSpan), so it does
// not depend on which context manager is active; baggage already in the active context travels too.
function carrierFor(span) {
  const carrier = {};
  propagation.inject(trace.setSpan(context.active(), span), carrier);
  if (typeof carrier.traceparent !== 'string') {
    throw new Error('no traceparent was injected: register a W3C propagator before publishing');
  }
  return carrier;
}

async function publish(url, message) {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    // RabbitMQ sends basic.return before the confirm of the same message, so once waitForConfirms()
    // resolves, `returned` says whether the message reached a queue.
    let returned = null;
    channel.on('return', (bounced) => {
      returned = bounced.fields;
    });
    channel.publish('', message.queue_name, Buffer.from(JSON.stringify(message)), {
      mandatory: true,
      persistent: true,
      contentType: 'application/json',
    });
    await channel.waitForConfirms();
    return returned;
  } finally {
    await connection.close();
  }
}

async function main() {
  const { queue, actorName, payload } = parseArgs(process.argv.slice(2));
  const provider = startTracing();
  const tracer = trace.getTracer('tracedq-node-producer');
  const messageId = randomUUID();
  const span = tracer.startSpan(`send ${queue}`, {
    kind: SpanKind.PRODUCER,
    attributes: {
      'messaging.system': 'rabbitmq',
      'messaging.operation.type': 'send',
      'messaging.destination.name': queue,
      'messaging.message.id': messageId,
    },
  });
  let returned = null;
  try {
    const message = {
      queue_name: queue,
      actor_name: actorName,
      args: [payload],
      kwargs: {},
      options: { trace_context: carrierFor(span) },
      message_id: messageId,
      message_timestamp: Date.now(),
    };
    returned = await publish(process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/', message);
    if (returned !== null) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: `returned: ${returned.replyText}` });
    }
  } catch (error) {
    span.recordException(error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
    throw error;
  } finally {
    span.end();
    // Flushes the span. A collector that is down costs the span, never the message, which is published.
    await provider.shutdown().catch((error) => {
      process.stderr.write(`could not export the send span: ${error.message}\n`);
    });
  }
  if (returned !== null) {
    process.stderr.write(
      `RabbitMQ returned message ${messageId} (${returned.replyCode} ${returned.replyText}): ` +
        `no queue named '${queue}' exists. Queues are declared by the workers (and Python producers); ` +
        'check the name, or start a worker first.\n',
    );
    process.exitCode = 1;
    return;
  }
  const { traceId, spanId } = span.spanContext();
  process.stdout.write(`${JSON.stringify({ trace_id: traceId, span_id: spanId, message_id: messageId })}\n`);
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exitCode = 1;
});
