//! The one place gRPC answers become HTTP answers (see `platform::errors`). Messages of codes
//! that describe the client's request pass through; anything else is logged here and
//! answered without internal text.

use axum::http::StatusCode;
use platform::http::Problem;

/// The HTTP answer for `status` from `service`.
pub(crate) fn problem(service: &str, status: tonic::Status) -> Problem {
    use tonic::Code::*;
    // The service's hint when it sheds load or throttles, else 1 s.
    let retry_after_s = status
        .metadata()
        .get(platform::grpc::RETRY_AFTER_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
        .map_or(1, |s| s.clamp(1, 3600));
    match status.code() {
        InvalidArgument | OutOfRange => Problem::unprocessable(status.message()),
        NotFound => Problem::not_found(status.message()),
        FailedPrecondition | Aborted | AlreadyExists => Problem::conflict(status.message()),
        ResourceExhausted if service == "order" => Problem::too_many_requests(
            "the marketplace is taking as many orders as it can finish; retry later",
            retry_after_s,
        ),
        ResourceExhausted => Problem::too_many_requests(status.message(), retry_after_s),
        Unauthenticated => Problem::unauthorized(Some("invalid_token"), status.message()),
        PermissionDenied => Problem::new(StatusCode::FORBIDDEN, "Forbidden", "not allowed"),
        Unavailable | DeadlineExceeded | Cancelled => {
            tracing::warn!(%service, code = ?status.code(), message = status.message(), "service unavailable");
            Problem {
                retry_after_s: Some(retry_after_s),
                ..Problem::unavailable(format!("the {service} service cannot answer now; retry"))
            }
        }
        Ok | Unknown | Internal | Unimplemented | DataLoss => {
            tracing::error!(%service, code = ?status.code(), message = status.message(), "service failed");
            Problem::internal()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::{
        http::header,
        response::{IntoResponse, Response},
    };

    use super::*;

    fn answer(status: tonic::Status) -> (StatusCode, Option<String>, String) {
        let response = problem("order", status).into_response();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let p = body(response);
        (
            StatusCode::from_u16(p.status).unwrap_or_default(),
            retry_after,
            p.detail,
        )
    }

    fn body(response: Response) -> Problem {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
                .await
                .expect("body");
            serde_json::from_slice(&bytes).expect("problem+json")
        })
    }

    #[test]
    fn internal_failures_become_a_500_that_keeps_the_cause_inside() {
        let secret = "relation \"orders\" does not exist at 10.1.2.1";
        for code in [
            tonic::Code::Internal,
            tonic::Code::Unknown,
            tonic::Code::DataLoss,
        ] {
            let (status, _, detail) = answer(tonic::Status::new(code, secret));
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{code:?}");
            assert!(
                !detail.contains("orders") && !detail.contains("10.1"),
                "{detail}"
            );
        }
    }

    #[test]
    fn an_unreachable_service_is_a_503_with_retry_after_and_no_internal_text() {
        let (status, retry_after, detail) = answer(tonic::Status::unavailable(
            "connect: 10.1.3.21:50051 refused",
        ));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert!(!detail.contains("10.1"), "{detail}");
    }

    #[test]
    fn client_mistakes_keep_their_explanation() {
        let cases = [
            (
                tonic::Status::invalid_argument("order: amount_minor must be positive"),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                tonic::Status::not_found("order: no order 5a0e"),
                StatusCode::NOT_FOUND,
            ),
            (
                tonic::Status::failed_precondition("order: already cancelled"),
                StatusCode::CONFLICT,
            ),
            (
                tonic::Status::resource_exhausted("busy"),
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                tonic::Status::unauthenticated("no token"),
                StatusCode::UNAUTHORIZED,
            ),
            (
                tonic::Status::permission_denied("not yours"),
                StatusCode::FORBIDDEN,
            ),
        ];
        for (s, want) in cases {
            let message = s.message().to_owned();
            let (status, _, detail) = answer(s);
            assert_eq!(status, want, "{message}");
            if want.as_u16() == 422 || want.as_u16() == 404 || want.as_u16() == 409 {
                assert_eq!(detail, message);
            }
        }
    }

    #[test]
    fn a_refused_login_is_a_401_with_a_bearer_challenge() {
        let response = problem(
            "user",
            tonic::Status::unauthenticated("user: wrong email or password"),
        )
        .into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            challenge.starts_with("Bearer realm=\"marketplace\", error=\"invalid_token\""),
            "{challenge}"
        );
    }
}
