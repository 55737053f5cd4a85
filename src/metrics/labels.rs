//! The closed sets of label values, as enums: a metric's label can only take a value listed
//! here, and every value's series is exported at zero from the start.

/// Declares a label enum with its values' label text and the list of all of them.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label value as exported.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        /// Serialised as its label text (as `/status` shows it).
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        /// Read back from its label text.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == text)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown value {text:?}")))
            }
        }

        /// A value equals its label text.
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

label_enum! {
    /// Label `operation` of `daftra_api_request_duration_seconds`.
    Operation {
        /// A list page.
        List => "list",
        /// One record (`get_record`, Site Info).
        Get => "get",
        /// The OAuth token.
        Token => "token",
    }
}

label_enum! {
    /// Why a Daftra request is retried: label `reason` of `daftra_api_retries_total`.
    RetryReason {
        /// 429 Too Many Requests.
        RateLimited => "rate_limited",
        /// 5xx.
        ServerError => "server_error",
        /// A timeout, or 408.
        Timeout => "timeout",
        /// No connection, or one that broke.
        Connection => "connection",
        /// A 200 whose body is not Daftra's envelope (truncated JSON, HTML, `result: failed`).
        Malformed => "malformed",
    }
}

label_enum! {
    /// How a poll read Daftra: label `mode` of `bridge_poll_requests_total` and
    /// `bridge_poll_records_total`.
    PollMode {
        /// Every page of the resource.
        Full => "full",
        /// Only the records changed since the watermark.
        Incremental => "incremental",
    }
}

label_enum! {
    /// Why a poll failed: label `reason` of `bridge_poll_failures_total`.
    PollFailure {
        /// Daftra answered with an error or not at all, after the retries.
        Upstream => "upstream",
        /// Daftra's answers were not its list envelope, after the retries.
        Malformed => "malformed",
        /// The poll outlived `POLL_DEADLINE_SECS`.
        Deadline => "deadline",
        /// The store refused or could not be reached.
        Store => "store",
    }
}

label_enum! {
    /// Why a publish failed: label `reason` of `bridge_publish_failures_total`.
    PublishFailure {
        /// The broker refused an event (basic.nack).
        Nack => "nack",
        /// No confirm within `PUBLISH_CONFIRM_TIMEOUT_SECS`.
        Timeout => "timeout",
        /// No connection, a connection attempt failed, or the channel closed.
        Connection => "connection",
    }
}

label_enum! {
    /// What became of one webhook attempt: label `outcome` of `bridge_webhook_deliveries_total`.
    DeliveryOutcome {
        /// The endpoint answered 2xx.
        Delivered => "delivered",
        /// The endpoint answered another status.
        Rejected => "rejected",
        /// No answer within `WEBHOOK_TIMEOUT_SECS`.
        Timeout => "timeout",
        /// No connection.
        Connection => "connection",
        /// The target's address is not allowed (private, loopback, link-local).
        Refused => "refused",
    }
}

label_enum! {
    /// Label `change` of `bridge_leadership_changes_total`.
    LeadershipChange {
        /// This replica took the leadership.
        Acquired => "acquired",
        /// This replica lost it.
        Lost => "lost",
    }
}

label_enum! {
    /// Why an event was parked: label `reason` of `bridge_events_parked_total`.
    ParkReason {
        /// Larger than the receiver takes (RabbitMQ's `max_message_size`, HTTP 413).
        TooLarge => "too_large",
        /// Refused for good by the receiver for another reason (HTTP 400, 415, 422).
        Refused => "refused",
    }
}

label_enum! {
    /// A sink: label `sink` of the parked-event metrics.
    Sink {
        /// The RabbitMQ exchange.
        Amqp => "amqp",
        /// An outgoing webhook endpoint.
        Webhook => "webhook",
    }
}

impl ParkReason {
    /// The reason a webhook answer with `status` parks its message: a 4xx that no retry
    /// changes (413 Payload Too Large; 400, 415 and 422, the request itself refused). Other
    /// answers are retried by the schedule (401, 403, 404, 408, 409 and 429 can heal).
    pub fn for_http_status(status: u16) -> Option<ParkReason> {
        match status {
            413 => Some(ParkReason::TooLarge),
            400 | 415 | 422 => Some(ParkReason::Refused),
            _ => None,
        }
    }

    /// The reason of its label text.
    pub fn parse(text: &str) -> Option<ParkReason> {
        ParkReason::ALL.iter().copied().find(|r| r.as_str() == text)
    }
}

label_enum! {
    /// Why a request was refused for its credentials: label `reason` of
    /// `bridge_http_auth_failures_total`.
    AuthFailure {
        /// No token where one is needed.
        Missing => "missing",
        /// A token that is neither `EXPORT_TOKEN` nor a key of this bridge.
        Unknown => "unknown",
        /// A revoked key.
        Revoked => "revoked",
        /// A key past its expiry.
        Expired => "expired",
        /// A key lacking the scope the route needs (403).
        Scope => "scope",
        /// A signed link whose signature does not match.
        LinkSignature => "link_signature",
        /// A signed link past its expiry (410).
        LinkExpired => "link_expired",
    }
}
