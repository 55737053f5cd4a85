//! The AsyncAPI 3.0 document of the events (`GET /asyncapi.json`,
//! <https://www.asyncapi.com/docs/reference/specification/v3.0.0>): the RabbitMQ exchange
//! (routing keys, message properties), the outgoing webhooks (headers, Standard Webhooks
//! signature) and the pull feed, with one message per event type of the served resources whose
//! payload is the CloudEvents envelope and, as `data`, the schema of [`super::schema`].

use serde_json::{json, Map, Value};

use super::schema::data_schema;
use super::{event_type, schema_path, Op};
use crate::catalogue::Resource;

/// What the document describes beyond the catalogue.
pub struct Deployment<'a> {
    /// The resources served.
    pub resources: &'a [&'static Resource],
    /// `AMQP_URL` with its password hidden.
    pub amqp_url: &'a str,
    /// `AMQP_EXCHANGE`.
    pub exchange: &'a str,
    /// `PUBLIC_URL`.
    pub public_url: &'a str,
}

/// `host[:port]` and the scheme of a URL (`amqp`, `http`, ...).
fn host_and_scheme(url: &str) -> (String, String) {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("localhost").to_string();
            let host = match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            };
            (host, u.scheme().to_string())
        }
        Err(_) => ("localhost".into(), "http".into()),
    }
}

/// The message of events of `op` on `resource`.
fn message(resource: &Resource, op: Op, public_url: &str) -> Value {
    let kind = event_type(resource, op);
    let schema_id = format!("{public_url}{}", schema_path(&kind));
    json!({
        "name": kind,
        "title": format!("{} {}", resource.singular, op.as_str()),
        "summary": format!("A {} was {} in Daftra.", resource.singular, op.as_str()),
        "contentType": "application/cloudevents+json",
        "correlationId": {"location": "$message.payload#/id"},
        "payload": {
            "type": "object",
            "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"],
            "properties": {
                "specversion": {"const": "1.0"},
                "id": {"type": "string", "description": "The change's id: the same on every delivery (dedupe on it); the AMQP message_id and the webhook-id."},
                "source": {"type": "string", "format": "uri", "description": format!("The Daftra site and the list: https://<site>/{}", resource.list_path)},
                "type": {"const": kind},
                "subject": {"type": "string", "description": "The record's key, as text."},
                "time": {"type": "string", "format": "date-time", "description": "When the bridge detected the change (UTC)."},
                "datacontenttype": {"const": "application/json"},
                "dataschema": {"type": "string", "format": "uri", "const": schema_id},
                "data": data_schema(resource, op, &schema_id),
            },
        },
        "bindings": {"amqp": {"messageType": kind, "bindingVersion": "0.3.0"}},
    })
}

/// The document.
pub fn document(d: &Deployment<'_>) -> Value {
    let mut messages = Map::new();
    for r in d.resources {
        for op in Op::ALL {
            let name = format!("{}.{}", r.singular, op.as_str());
            messages.insert(name, message(r, op, d.public_url));
        }
    }
    let channel_messages = |prefix: &str| -> Map<String, Value> {
        messages
            .keys()
            .map(|k| {
                (
                    k.clone(),
                    json!({"$ref": format!("#/components/messages/{k}")}),
                )
            })
            .map(|(k, v)| (format!("{prefix}{k}"), v))
            .collect()
    };
    let op_messages = |channel: &str| -> Vec<Value> {
        messages
            .keys()
            .map(|k| json!({"$ref": format!("#/channels/{channel}/messages/{k}")}))
            .collect()
    };
    let (amqp_host, _) = host_and_scheme(d.amqp_url);
    let (http_host, http_scheme) = host_and_scheme(d.public_url);
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "daftra-bridge events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Changes to Daftra records as CloudEvents 1.0 (created, updated, deleted), delivered at least once: on a RabbitMQ topic exchange, to signed HTTP webhooks, and on a pull feed. Dedupe on the event id.",
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "rabbitmq": {"host": amqp_host, "protocol": "amqp", "protocolVersion": "0-9-1",
                "description": "The broker of AMQP_URL."},
            "bridge": {"host": http_host, "protocol": http_scheme,
                "description": "The bridge itself (PUBLIC_URL): the pull feed GET /events."},
        },
        "channels": {
            "exchange": {
                "address": "{routingKey}",
                "title": format!("The topic exchange {}", d.exchange),
                "description": "Routing keys are <singular>.<created|updated|deleted> (invoice.created). Messages are persistent, content_type application/cloudevents+json, message_id the event id, app_id daftra-bridge, timestamp the publish time (Unix seconds); publisher confirms make delivery at least once.",
                "parameters": {"routingKey": {"description": "<singular>.<created|updated|deleted>", "examples": ["invoice.created", "work_order.updated"]}},
                "servers": [{"$ref": "#/servers/rabbitmq"}],
                "messages": channel_messages(""),
                "bindings": {"amqp": {"is": "routingKey", "exchange": {"name": d.exchange, "type": "topic", "durable": true, "autoDelete": false, "vhost": "/"}, "bindingVersion": "0.3.0"}},
            },
            "webhooks": {
                "title": "Outgoing webhooks",
                "description": "A POST of each event to every endpoint registered with POST /webhooks/endpoints whose patterns match its routing key. Headers (Standard Webhooks): webhook-id (the event id), webhook-timestamp (Unix seconds), webhook-signature (v1,<base64 HMAC-SHA256 of id.timestamp.body under the endpoint's secret>; two while a secret rotates). A 2xx is delivery; others are retried on the endpoint's schedule.",
                "messages": channel_messages(""),
            },
            "feed": {
                "address": "/events",
                "title": "The pull change feed",
                "description": "GET /events?after={cursor}&types=...&limit=...&wait=... answers {\"events\": [...], \"next_cursor\": \"...\"}, oldest first.",
                "servers": [{"$ref": "#/servers/bridge"}],
                "messages": channel_messages(""),
            },
        },
        "operations": {
            "publishToExchange": {"action": "send", "channel": {"$ref": "#/channels/exchange"},
                "summary": "The bridge publishes each change to the exchange.", "messages": op_messages("exchange"),
                "bindings": {"amqp": {"deliveryMode": 2, "mandatory": true, "bindingVersion": "0.3.0"}}},
            "deliverWebhooks": {"action": "send", "channel": {"$ref": "#/channels/webhooks"},
                "summary": "The bridge POSTs each change to the matching endpoints.", "messages": op_messages("webhooks")},
            "answerFeed": {"action": "send", "channel": {"$ref": "#/channels/feed"},
                "summary": "The bridge answers GET /events with the changes after a cursor.", "messages": op_messages("feed")},
        },
        "components": {"messages": messages},
    })
}
