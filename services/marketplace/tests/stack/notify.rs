//! The notification service's gRPC trigger API on the real stack: the order saga tells the
//! buyer through it, messages go out through the messaging provider once, in-app messages
//! land in the live feed, and bad requests are refused by name.

use std::time::Duration;

use contracts::notification::{
    notification_service_client::NotificationServiceClient, Channel as MessageChannel,
    DeliveryStatus, Notification, NotificationRef, NotifyRequest,
};
use tonic::{transport::Channel, Code};

use crate::support::{self, Stack};

async fn client(stack: &Stack) -> NotificationServiceClient<Channel> {
    let url = format!(
        "http://{}",
        support::listen(&stack.settings, "notification")
    );
    NotificationServiceClient::connect(url)
        .await
        .expect("the notification service's gRPC port answers")
}

fn request(
    recipient: &str,
    channel: MessageChannel,
    template: &str,
    params: &[(&str, &str)],
) -> NotifyRequest {
    NotifyRequest {
        recipient: recipient.into(),
        channel: channel as i32,
        template: template.into(),
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

async fn notify(
    c: &mut NotificationServiceClient<Channel>,
    key: Option<&str>,
    req: NotifyRequest,
) -> Result<Notification, tonic::Status> {
    c.notify(platform::grpc::request(req, key))
        .await
        .map(tonic::Response::into_inner)
}

/// The message of `key` once it left PENDING (bounded).
async fn settled(c: &mut NotificationServiceClient<Channel>, key: &str) -> Notification {
    let started = tokio::time::Instant::now();
    loop {
        let got = c
            .get_notification(NotificationRef { key: key.into() })
            .await
            .map(tonic::Response::into_inner);
        match got {
            Ok(n) if n.status != DeliveryStatus::Pending as i32 => return n,
            Ok(_) | Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("message {key} never settled: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_tells_the_buyer_and_notify_sends_each_message_once() {
    let stack = support::start(|s| {
        // Every message meets a failure or a late answer now and then; none is lost or
        // delivered twice (the idempotency key), which GetNotification shows.
        s.messenger.fail_per_mille = 200;
        s.messenger.late_per_mille = 0;
    })
    .await;
    let mut c = client(&stack).await;
    let user = stack.session.user_id.clone();

    let order = stack.place_order(Some("notify-1")).await;
    stack
        .await_order(&order.order_id, Duration::from_secs(60), |o| {
            o.status == "DELIVERED"
        })
        .await;
    let confirmed = settled(&mut c, &format!("confirmed-{}", order.order_id)).await;
    assert_eq!(
        confirmed.status,
        DeliveryStatus::Sent as i32,
        "{confirmed:?}"
    );
    assert_eq!(confirmed.channel, MessageChannel::Email as i32);
    assert_eq!(confirmed.recipient, user);
    assert_eq!(
        confirmed.subject,
        format!("Order {} is confirmed", order.order_id)
    );
    assert!(
        confirmed.body.contains("should arrive by 20"),
        "{}",
        confirmed.body
    );
    assert!(confirmed.provider_id.starts_with("msg_"), "{confirmed:?}");
    let delivered = settled(&mut c, &format!("delivered-{}", order.order_id)).await;
    assert_eq!(
        (delivered.status, delivered.channel),
        (DeliveryStatus::Sent as i32, MessageChannel::Push as i32)
    );

    // A caller's own e-mail; its retry with the same key is the same message.
    let mail = request(
        &user,
        MessageChannel::Email,
        "order_delivered",
        &[("order_id", "o-77")],
    );
    let first = notify(&mut c, Some("mail-1"), mail.clone())
        .await
        .expect("queued");
    assert_eq!(first.body, "Your order o-77 has arrived. Enjoy it!");
    let sent = settled(&mut c, "mail-1").await;
    assert_eq!(sent.status, DeliveryStatus::Sent as i32, "{sent:?}");
    let again = notify(&mut c, Some("mail-1"), mail)
        .await
        .expect("the same");
    assert_eq!(again.provider_id, sent.provider_id);
    let other = request(
        &user,
        MessageChannel::Email,
        "order_delivered",
        &[("order_id", "o-78")],
    );
    let reused = notify(&mut c, Some("mail-1"), other)
        .await
        .expect_err("refused");
    assert_eq!(reused.code(), Code::FailedPrecondition, "{reused:?}");

    // In-app: in the feed when Notify answers, once however often it is asked.
    let in_app = request(
        &user,
        MessageChannel::InApp,
        "refund_issued",
        &[("order_id", "o-79")],
    );
    let n = notify(&mut c, Some("in-app-1"), in_app.clone())
        .await
        .expect("sent");
    assert_eq!(n.status, DeliveryStatus::Sent as i32);
    let n2 = notify(&mut c, Some("in-app-1"), in_app)
        .await
        .expect("the same");
    assert_eq!(n2.provider_id, n.provider_id);
    let page: serde_json::Value = stack
        .client()
        .get_json_with(
            &format!(
                "http://{}/v1/notifications?limit=500",
                support::listen(&stack.settings, "notification-http")
            ),
            &[("authorization", &support::bearer(&stack.session))],
        )
        .await
        .expect("the page");
    let notices: Vec<&serde_json::Value> = page["updates"]
        .as_array()
        .expect("updates")
        .iter()
        .filter(|u| u["kind"] == "notice")
        .collect();
    assert_eq!(notices.len(), 1, "{page}");
    assert_eq!(notices[0]["subject"], "o-79");
    assert_eq!(notices[0]["body"]["key"], "in-app-1");
    let seq = n.provider_id.rsplit(':').next().expect("epoch:seq");
    assert_eq!(notices[0]["seq"].to_string(), seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_notify_requests_are_refused_by_name_and_queue_nothing() {
    let stack = support::start(|_| {}).await;
    let mut c = client(&stack).await;
    let ok = || {
        request(
            "u-1",
            MessageChannel::Sms,
            "order_delivered",
            &[("order_id", "o-1")],
        )
    };
    let many: Vec<(String, String)> = (0..17).map(|i| (format!("p{i}"), "v".into())).collect();
    let long = "r".repeat(700);
    let cases: Vec<(&str, Option<&str>, NotifyRequest, Code, &str)> = vec![
        (
            "no key",
            None,
            ok(),
            Code::InvalidArgument,
            "idempotency-key",
        ),
        (
            "unknown template",
            Some("b-1"),
            request("u-1", MessageChannel::Sms, "nope", &[]),
            Code::InvalidArgument,
            "no template",
        ),
        (
            "missing parameter",
            Some("b-2"),
            request("u-1", MessageChannel::Sms, "order_delivered", &[]),
            Code::InvalidArgument,
            "needs parameter",
        ),
        (
            "unknown parameter",
            Some("b-3"),
            request(
                "u-1",
                MessageChannel::Sms,
                "order_delivered",
                &[("order_id", "o"), ("x", "y")],
            ),
            Code::InvalidArgument,
            "takes no parameter",
        ),
        (
            "no channel",
            Some("b-4"),
            request(
                "u-1",
                MessageChannel::Unspecified,
                "order_delivered",
                &[("order_id", "o")],
            ),
            Code::InvalidArgument,
            "channel",
        ),
        (
            "no recipient",
            Some("b-5"),
            request(
                "",
                MessageChannel::Sms,
                "order_delivered",
                &[("order_id", "o")],
            ),
            Code::InvalidArgument,
            "recipient",
        ),
        (
            "too many parameters",
            Some("b-6"),
            NotifyRequest {
                params: many.into_iter().collect(),
                ..ok()
            },
            Code::InvalidArgument,
            "at most 16",
        ),
        (
            "an SMS too long",
            Some("b-7"),
            request(
                "u-1",
                MessageChannel::Sms,
                "payment_failed",
                &[("order_id", "o"), ("reason", &long)],
            ),
            Code::InvalidArgument,
            "at most 640",
        ),
        (
            "a NUL in a parameter",
            Some("b-8"),
            request(
                "u-1",
                MessageChannel::Sms,
                "order_delivered",
                &[("order_id", "o\0")],
            ),
            Code::InvalidArgument,
            "NUL",
        ),
    ];
    for (what, key, req, code, says) in cases {
        let e = notify(&mut c, key, req).await.expect_err(what);
        assert_eq!(e.code(), code, "{what}: {e:?}");
        assert!(e.message().contains(says), "{what}: {}", e.message());
        if let Some(key) = key {
            let nothing = c
                .get_notification(NotificationRef { key: key.into() })
                .await
                .expect_err("nothing queued");
            assert_eq!(nothing.code(), Code::NotFound, "{what}");
        }
    }
    let e = c
        .get_notification(NotificationRef { key: String::new() })
        .await
        .expect_err("no key");
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .get_notification(NotificationRef { key: "k\0".into() })
        .await
        .expect_err("a NUL in the key");
    assert_eq!(e.code(), Code::InvalidArgument);
}
