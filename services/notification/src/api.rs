//! The gRPC trigger API: other services ask for a message to a user.
//!
//! `Notify` is idempotent by the `idempotency-key` metadata: the request is stored under its
//! key with the rendered message, in one transaction (with the feed update, for in-app), so
//! a retry finds it and nothing is sent twice. E-mail, SMS and push are then sent by the
//! [`crate::worker`]; the answer says PENDING until the provider accepted.

use std::{collections::BTreeMap, sync::Arc};

use contracts::notification::{
    notification_service_server::NotificationService, Channel, DeliveryStatus,
    Notification as NotificationMsg, NotificationRef, NotifyRequest,
};
use platform::{
    grpc::{idempotency_key, store_status},
    ports::{Store, StoreError, Tx, Versioned},
    retry::on_conflict,
};
use tonic::{Request, Response, Status};

use crate::{
    now_ms,
    store::{read_outgoing, NotificationSchema, Outgoing},
    templates,
};

const SERVICE: &str = "notification";
/// Bounds on a request's parameters.
pub const PARAMS_MAX: usize = 16;
pub const PARAM_NAME_BYTES_MAX: usize = 64;
pub const PARAM_VALUE_BYTES_MAX: usize = 1024;

pub(crate) struct NotificationApi {
    pub store: Arc<dyn Store<NotificationSchema>>,
    /// Wakes the worker when a message is queued.
    pub work: Arc<tokio::sync::Notify>,
}

pub(crate) fn to_msg(o: &Outgoing) -> NotificationMsg {
    NotificationMsg {
        key: o.key.clone(),
        recipient: o.recipient.clone(),
        channel: Channel::from_api_name(&o.channel) as i32,
        template: o.template.clone(),
        subject: o.subject.clone(),
        body: o.body.clone(),
        status: DeliveryStatus::from_api_name(&o.status) as i32,
        attempts: u32::try_from(o.attempts).unwrap_or(0),
        reason: o.reason.clone(),
        provider_id: o.provider_id.clone(),
    }
}

/// A request's canonical text: what a repeated key must match.
fn canonical(
    recipient: &str,
    channel: &str,
    template: &str,
    params: &BTreeMap<String, String>,
) -> String {
    serde_json::json!({
        "recipient": recipient,
        "channel": channel,
        "template": template,
        "params": params,
    })
    .to_string()
}

fn invalid(detail: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{SERVICE}: {detail}"))
}

/// The stored message of `key` if it was asked for with the same request.
fn same_request(existing: Versioned<Outgoing>, request: &str) -> Result<Outgoing, Status> {
    if existing.value.request == request {
        Ok(existing.value)
    } else {
        Err(Status::failed_precondition(format!(
            "{SERVICE}: idempotency key {} was used for another request",
            existing.value.key
        )))
    }
}

/// Checks a request's fields; the channel's store name.
fn validate(req: &NotifyRequest) -> Result<String, Status> {
    if !(1..=64).contains(&req.recipient.chars().count())
        || req.recipient.chars().any(char::is_control)
    {
        return Err(invalid(
            "recipient must be 1 to 64 characters, none a control character",
        ));
    }
    let channel = Channel::try_from(req.channel)
        .ok()
        .filter(|c| *c != Channel::Unspecified)
        .ok_or_else(|| invalid("channel must be EMAIL, SMS, PUSH or IN_APP"))?;
    if req.params.len() > PARAMS_MAX {
        return Err(invalid(format!("at most {PARAMS_MAX} parameters")));
    }
    for (k, v) in &req.params {
        if k.is_empty()
            || k.len() > PARAM_NAME_BYTES_MAX
            || v.len() > PARAM_VALUE_BYTES_MAX
            || k.contains('\0')
            || v.contains('\0')
        {
            return Err(invalid(format!(
                "parameter names are 1 to {PARAM_NAME_BYTES_MAX} bytes, values at most \
                 {PARAM_VALUE_BYTES_MAX}, neither with a NUL character"
            )));
        }
    }
    Ok(channel.api_name())
}

impl NotificationApi {
    async fn notify_in_span(
        &self,
        request: Request<NotifyRequest>,
    ) -> Result<Response<NotificationMsg>, Status> {
        let key = idempotency_key(SERVICE, &request)?;
        let req = request.into_inner();
        let channel = validate(&req)?;
        let request = canonical(&req.recipient, &channel, &req.template, &req.params);
        let store = &*self.store;
        // A retry finds its message before anything is rendered again.
        if let Some(existing) = read_outgoing(store, &key)
            .await
            .map_err(|e| store_status(SERVICE, e))?
        {
            return Ok(Response::new(to_msg(&same_request(existing, &request)?)));
        }
        let (subject, body) =
            templates::render(&req.template, &req.params, &channel).map_err(invalid)?;
        let now = now_ms();
        let queued = Outgoing {
            key: key.clone(),
            recipient: req.recipient.clone(),
            channel: channel.clone(),
            template: req.template.clone(),
            request: request.clone(),
            subject,
            body,
            status: "PENDING".into(),
            attempts: 0,
            reason: String::new(),
            provider_id: String::new(),
            next_attempt_ms: now,
            created_ms: now,
            updated_ms: now,
            trace: platform::trace::current_stored(),
        };
        // In-app: the feed update and the message commit together; an append that lost to
        // another takes the next seq, a key taken meanwhile answers with its message.
        let stored = on_conflict("notify", |_| async {
            if let Some(existing) = read_outgoing(store, &key).await? {
                return Ok(Err(existing));
            }
            let (tx, o) = if channel == "in_app" {
                in_app(store, &queued, &req.params).await?
            } else {
                (
                    Tx::new().write(crate::NotificationWrite::Queue(queued.clone())),
                    queued.clone(),
                )
            };
            store.commit(tx).await?;
            Ok(Ok(o))
        })
        .await
        .map_err(|e| store_status(SERVICE, e))?;
        let o = match stored {
            Ok(o) => o,
            Err(existing) => same_request(existing, &request)?,
        };
        if o.is_pending() {
            self.work.notify_one();
        }
        Ok(Response::new(to_msg(&o)))
    }
}

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn notify(
        &self,
        request: Request<NotifyRequest>,
    ) -> Result<Response<NotificationMsg>, Status> {
        let caller = platform::trace::of_request(&request);
        platform::trace::serve("notification.Notify", caller, self.notify_in_span(request)).await
    }

    async fn get_notification(
        &self,
        request: Request<NotificationRef>,
    ) -> Result<Response<NotificationMsg>, Status> {
        let key = request.into_inner().key;
        if key.is_empty()
            || key.len() > crate::store::KEY_BYTES_MAX
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid("key must be 1 to 128 visible ASCII characters"));
        }
        match read_outgoing(&*self.store, &key)
            .await
            .map_err(|e| store_status(SERVICE, e))?
        {
            Some(o) => Ok(Response::new(to_msg(&o.value))),
            None => Err(Status::not_found(format!(
                "{SERVICE}: no notification {key}"
            ))),
        }
    }
}

/// The transaction of an in-app message: its feed update, and the message as sent.
async fn in_app(
    store: &dyn Store<NotificationSchema>,
    queued: &Outgoing,
    params: &BTreeMap<String, String>,
) -> Result<(Tx<crate::NotificationWrite>, Outgoing), StoreError> {
    // The order a message is about, for the feed's `order` filter.
    let subject = params
        .get("order_id")
        .filter(|o| (1..=64).contains(&o.chars().count()))
        .cloned()
        .unwrap_or_default();
    let body = serde_json::json!({
        "key": queued.key,
        "template": queued.template,
        "title": queued.subject,
        "text": queued.body,
    })
    .to_string();
    let (tx, epoch, seq) = crate::append_tx(
        store,
        &queued.recipient,
        "notice",
        &subject,
        body,
        crate::FEED_KEEP,
    )
    .await?;
    let sent = Outgoing {
        status: "SENT".into(),
        provider_id: format!("{epoch}:{seq}"),
        ..queued.clone()
    };
    Ok((
        tx.write(crate::NotificationWrite::Queue(sent.clone())),
        sent,
    ))
}
