//! The message templates `Notify` renders (minijinja, strict: a parameter the template uses
//! but the request lacks is an error, and so is one the template does not declare).

use std::{collections::BTreeMap, sync::OnceLock};

use minijinja::{Environment, UndefinedBehavior};

/// One template: a subject line and a body, and the parameters they take.
#[derive(Clone, Copy, Debug)]
pub struct Template {
    pub name: &'static str,
    pub subject: &'static str,
    pub body: &'static str,
    pub params: &'static [&'static str],
}

/// Every template the service knows.
pub const TEMPLATES: [Template; 4] = [
    Template {
        name: "order_confirmed",
        subject: "Order {{ order_id }} is confirmed",
        body: "Thank you! Your order {{ order_id }} is paid and should arrive by {{ eta }}.",
        params: &["order_id", "eta"],
    },
    Template {
        name: "payment_failed",
        subject: "Payment for order {{ order_id }} failed",
        body: "We could not take the payment for order {{ order_id }}: {{ reason }}. \
               The order is cancelled and no money is kept.",
        params: &["order_id", "reason"],
    },
    Template {
        name: "order_delivered",
        subject: "Order {{ order_id }} is delivered",
        body: "Your order {{ order_id }} has arrived. Enjoy it!",
        params: &["order_id"],
    },
    Template {
        name: "refund_issued",
        subject: "Refund for order {{ order_id }}",
        body: "The delivery of order {{ order_id }} failed; your payment is refunded.",
        params: &["order_id"],
    },
];

/// Bound on a rendered body per channel: what its provider takes (an e-mail body, a
/// multi-part SMS, a push) or what a feed update holds.
pub fn body_bytes_max(channel: &str) -> usize {
    match channel {
        "sms" => 640,
        "push" => 2048,
        _ => 8 * 1024,
    }
}

/// Why a request cannot be rendered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error(
        "no template {0:?}; known: order_confirmed, payment_failed, order_delivered, refund_issued"
    )]
    Unknown(String),
    #[error("template {template} takes no parameter {param:?}")]
    UnknownParam { template: String, param: String },
    #[error("template {template} needs parameter {param:?}")]
    MissingParam { template: String, param: String },
    #[error("the rendered {what} is {bytes} bytes; at most {max} on {channel}")]
    TooLong {
        what: &'static str,
        bytes: usize,
        max: usize,
        channel: String,
    },
    #[error("template {template} does not render: {detail}")]
    Broken { template: String, detail: String },
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for t in TEMPLATES {
            // The table is ours and tested: a template that does not parse is a bug caught by
            // `every_template_renders_with_its_parameters`, and leaves that one unusable.
            let _ = env.add_template(subject_name(t.name).leak(), t.subject);
            let _ = env.add_template(body_name(t.name).leak(), t.body);
        }
        env
    })
}

fn subject_name(name: &str) -> String {
    format!("{name}.subject")
}

fn body_name(name: &str) -> String {
    format!("{name}.body")
}

/// `template` rendered with `params` for `channel`: (subject, body).
pub fn render(
    template: &str,
    params: &BTreeMap<String, String>,
    channel: &str,
) -> Result<(String, String), RenderError> {
    let t = TEMPLATES
        .iter()
        .find(|t| t.name == template)
        .ok_or_else(|| RenderError::Unknown(template.to_owned()))?;
    if let Some(p) = params.keys().find(|p| !t.params.contains(&p.as_str())) {
        return Err(RenderError::UnknownParam {
            template: t.name.into(),
            param: p.clone(),
        });
    }
    if let Some(p) = t.params.iter().find(|p| !params.contains_key(**p)) {
        return Err(RenderError::MissingParam {
            template: t.name.into(),
            param: (*p).into(),
        });
    }
    let env = environment();
    let one = |name: String| {
        env.get_template(&name)
            .and_then(|tpl| tpl.render(params))
            .map_err(|e| RenderError::Broken {
                template: t.name.into(),
                detail: e.to_string(),
            })
    };
    let subject = one(subject_name(t.name))?;
    let body = one(body_name(t.name))?;
    let max = body_bytes_max(channel);
    if body.len() > max {
        return Err(RenderError::TooLong {
            what: "body",
            bytes: body.len(),
            max,
            channel: channel.into(),
        });
    }
    if subject.chars().count() > 256 {
        return Err(RenderError::TooLong {
            what: "subject",
            bytes: subject.len(),
            max: 256,
            channel: channel.into(),
        });
    }
    Ok((subject, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_template_renders_with_its_parameters() {
        for t in TEMPLATES {
            let p: BTreeMap<String, String> = t
                .params
                .iter()
                .map(|p| ((*p).to_owned(), format!("<{p}>")))
                .collect();
            let (subject, body) = render(t.name, &p, "email").expect(t.name);
            assert!(!subject.is_empty() && !body.is_empty(), "{}", t.name);
            for p in t.params {
                assert!(
                    subject.contains(&format!("<{p}>")) || body.contains(&format!("<{p}>")),
                    "{} does not use {p}",
                    t.name
                );
            }
        }
    }

    #[test]
    fn an_order_confirmation_names_the_order_and_its_arrival() {
        let (subject, body) = render(
            "order_confirmed",
            &params(&[("order_id", "o-1"), ("eta", "2026-12-03")]),
            "sms",
        )
        .expect("renders");
        assert_eq!(subject, "Order o-1 is confirmed");
        assert_eq!(
            body,
            "Thank you! Your order o-1 is paid and should arrive by 2026-12-03."
        );
    }

    #[test]
    fn unknown_templates_and_wrong_parameters_are_refused_by_name() {
        assert_eq!(
            render("nope", &params(&[]), "email"),
            Err(RenderError::Unknown("nope".into()))
        );
        assert!(matches!(
            render("order_delivered", &params(&[]), "email"),
            Err(RenderError::MissingParam { param, .. }) if param == "order_id"
        ));
        assert!(matches!(
            render("order_delivered", &params(&[("order_id", "o"), ("x", "1")]), "email"),
            Err(RenderError::UnknownParam { param, .. }) if param == "x"
        ));
    }

    #[test]
    fn a_body_too_long_for_its_channel_is_refused() {
        let long = "r".repeat(700);
        let p = params(&[("order_id", "o-1"), ("reason", &long)]);
        assert!(matches!(
            render("payment_failed", &p, "sms"),
            Err(RenderError::TooLong { max: 640, .. })
        ));
        assert!(render("payment_failed", &p, "email").is_ok());
    }

    #[test]
    fn parameters_are_text_not_template_code() {
        let p = params(&[("order_id", "{{ eta }}")]);
        let (_, body) = render("order_delivered", &p, "push").expect("renders");
        assert!(body.contains("{{ eta }}"), "{body}");
    }
}
