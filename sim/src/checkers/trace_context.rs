//! Trace context reaches everything an order causes: every `order.status.changed` event of
//! the order (through the outbox and Kafka), every call the PSP got for it (through the
//! saga's gRPC call to payment, the payment's row and its worker), every call the courier
//! got for it (through delivery) and every call the messaging provider got for a message
//! about it (through the saga's `Notify`, the notification's row and its sending worker),
//! in the trace of the request that created the order.
//!
//! The client sends each order request with a `traceparent` of a trace of its own; an order
//! whose event or provider call carries no trace context, or another trace's, is a
//! violation. A run that placed orders but saw none of their events proves nothing and is a
//! violation too.

use platform::trace::{TraceContext, TRACEPARENT};

use super::{FinalState, Violation};

pub(crate) const NAME: &str = "trace-context";

fn trace_of(traceparent: Option<&str>) -> Option<String> {
    TraceContext::parse(traceparent?, None).map(|c| c.trace_id_hex())
}

pub fn check(state: &FinalState) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut violation = |detail: String| {
        out.push(Violation {
            checker: NAME,
            detail,
        })
    };
    // Order id → the trace its request was sent in.
    let traces: std::collections::BTreeMap<&str, &str> = state
        .order_traces
        .iter()
        .filter_map(|(key, trace)| Some((state.requests.get(key)?.as_str(), trace.as_str())))
        .collect();
    let mut events_seen = 0usize;
    for record in state.order_events.iter().flatten() {
        let Some(expected) = traces.get(record.key.as_str()) else {
            continue;
        };
        events_seen += 1;
        let carried = trace_of(record.header(TRACEPARENT));
        if carried.as_deref() != Some(*expected) {
            violation(format!(
                "order {} event at {}@{} carries trace {carried:?}, not its request's {expected}",
                record.key, record.partition, record.offset
            ));
        }
    }
    let messages = state
        .messenger_traced
        .iter()
        .filter_map(|(key, tp)| Some((super::messages::order_of(key)?.to_owned(), tp.clone())))
        .collect::<Vec<_>>();
    for (provider, calls) in [
        ("PSP", &state.psp_traced),
        ("courier", &state.courier_traced),
        ("messaging provider", &messages),
    ] {
        for (order_id, traceparent) in calls {
            let Some(expected) = traces.get(order_id.as_str()) else {
                continue;
            };
            let carried = trace_of(traceparent.as_deref());
            if carried.as_deref() != Some(*expected) {
                violation(format!(
                    "the {provider} was called for order {order_id} in trace {carried:?}, not \
                     its request's {expected}"
                ));
            }
        }
    }
    if !state.orders.is_empty() && events_seen == 0 {
        violation(format!(
            "{} orders exist, {} of them matched to the trace of their request, but none of \
             their events was seen: the check proves nothing",
            state.orders.len(),
            traces.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::ports::ConsumedRecord;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn state(event_headers: Vec<(String, String)>, psp: Option<&str>) -> FinalState {
        let tp = format!("00-{TRACE}-00f067aa0ba902b7-01");
        with_message(event_headers, psp, Some(&tp))
    }

    fn with_message(
        event_headers: Vec<(String, String)>,
        psp: Option<&str>,
        message: Option<&str>,
    ) -> FinalState {
        FinalState {
            order_traces: [("k1".to_owned(), TRACE.to_owned())].into(),
            requests: [("k1".to_owned(), "o1".to_owned())].into(),
            order_events: vec![vec![ConsumedRecord {
                topic: "order.status.changed".into(),
                partition: 0,
                offset: 0,
                key: "o1".into(),
                payload: vec![],
                headers: event_headers,
            }]],
            psp_traced: vec![("o1".into(), psp.map(str::to_owned))],
            messenger_traced: vec![("payment-failed-o1".into(), message.map(str::to_owned))],
            ..FinalState::default()
        }
    }

    #[test]
    fn the_orders_trace_everywhere_passes_and_a_lost_one_is_caught() {
        let tp = format!("00-{TRACE}-00f067aa0ba902b7-01");
        let good = vec![(TRACEPARENT.to_owned(), tp.clone())];
        assert_eq!(check(&state(good.clone(), Some(&tp))), vec![]);
        assert_eq!(
            check(&state(vec![], Some(&tp))).len(),
            1,
            "event without context"
        );
        assert_eq!(
            check(&state(good.clone(), None)).len(),
            1,
            "PSP call without context"
        );
        let other = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01";
        assert_eq!(
            check(&with_message(good.clone(), Some(&tp), Some(other))).len(),
            1,
            "a message sent in another trace"
        );
        assert_eq!(check(&state(good, Some(other))).len(), 1, "another trace");
    }
}
