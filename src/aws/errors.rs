//! Maps what an SDK call returned onto the fixed failure reasons: network failures from the
//! error's source chain (`timeout`, `refused`, `unreachable`, `reset`, DNS reasons, `tls_error`,
//! `cert_invalid`), then AWS error codes (`aws_auth`, `aws_denied`, `aws_throttled`, else
//! `aws_error`). `aws_denied` means AWS answered: the network path of the family worked.

use std::error::Error as StdError;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use crate::model::failure::{Failure, FailureReason};

/// Error codes meaning the credentials or the signature were rejected.
pub const AUTH_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AuthFailure",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "TokenRefreshRequired",
    "InvalidToken",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "AuthorizationHeaderMalformed",
    "RequestExpired",
    "RequestTimeTooSkewed",
    "InvalidSecurity",
];

/// Error codes meaning the caller is known but not allowed: the request reached AWS.
pub const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AllAccessDisabled",
    "Blocked",
    "OptInRequired",
];

/// Error codes meaning AWS throttled the call.
pub const THROTTLED_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "BandwidthLimitExceeded",
    "ProvisionedThroughputExceededException",
    "EC2ThrottledException",
];

/// The reason for an AWS error code (and HTTP status, when there is no code).
pub fn reason_for_code(code: Option<&str>, status: Option<u16>) -> FailureReason {
    match code {
        Some(c) if AUTH_CODES.contains(&c) => FailureReason::AwsAuth,
        Some(c) if DENIED_CODES.contains(&c) => FailureReason::AwsDenied,
        Some(c) if THROTTLED_CODES.contains(&c) => FailureReason::AwsThrottled,
        Some(_) => FailureReason::AwsError,
        None => match status {
            Some(401) => FailureReason::AwsAuth,
            Some(403) => FailureReason::AwsDenied,
            Some(429) | Some(503) => FailureReason::AwsThrottled,
            _ => FailureReason::AwsError,
        },
    }
}

/// Classifies a failed SDK call.
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let detail = chain(err);
    match err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code();
            let reason = reason_for_code(code, Some(status));
            let message = se.err().message().unwrap_or_default();
            let detail = match code {
                Some(c) if !message.is_empty() => format!("{c} (HTTP {status}): {message}"),
                Some(c) => format!("{c} (HTTP {status})"),
                None => format!("HTTP {status}: {detail}"),
            };
            Failure::new(reason, detail)
        }
        SdkError::TimeoutError(_) => Failure::new(FailureReason::Timeout, detail),
        SdkError::DispatchFailure(df) => {
            // Identity resolution (no credentials found, provider errors) fails here, before
            // anything is sent to the service: that is a credentials problem, not the path's.
            if df.is_other() && detail.to_ascii_lowercase().contains("credential") {
                return Failure::new(FailureReason::AwsAuth, detail);
            }
            if let Some(f) = network_reason(err) {
                return Failure::new(f, detail);
            }
            let reason = if df.is_timeout() {
                FailureReason::Timeout
            } else if df.is_io() {
                FailureReason::Unreachable
            } else {
                FailureReason::Other
            };
            Failure::new(reason, detail)
        }
        SdkError::ConstructionFailure(_) => {
            let lower = detail.to_ascii_lowercase();
            if lower.contains("credential") || lower.contains("identity") {
                Failure::new(FailureReason::AwsAuth, detail)
            } else {
                Failure::new(FailureReason::Other, detail)
            }
        }
        SdkError::ResponseError(_) => match network_reason(err) {
            Some(r) => Failure::new(r, detail),
            None => Failure::new(FailureReason::AwsError, detail),
        },
        _ => Failure::new(FailureReason::AwsError, detail),
    }
}

pub use crate::net::http::network_reason;

/// The error and its sources on one line (shared with the checks).
pub use crate::model::failure::error_chain as chain;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::http::CarriedFailure;
    use aws_sdk_ec2::operation::describe_regions::DescribeRegionsError;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::list_buckets::ListBucketsError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn s3_err(code: &str, status: u16) -> SdkError<ListBucketsError, HttpResponse> {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        SdkError::service_error(
            ListBucketsError::generic(meta),
            HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty()),
        )
    }

    fn ec2_err(code: &str, status: u16) -> SdkError<DescribeRegionsError, HttpResponse> {
        let meta = aws_sdk_ec2::error::ErrorMetadata::builder()
            .code(code)
            .build();
        SdkError::service_error(
            DescribeRegionsError::generic(meta),
            HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty()),
        )
    }

    #[test]
    fn service_codes_map_to_fixed_reasons() {
        for (code, status, reason) in [
            ("InvalidAccessKeyId", 403, FailureReason::AwsAuth),
            ("SignatureDoesNotMatch", 403, FailureReason::AwsAuth),
            ("ExpiredToken", 400, FailureReason::AwsAuth),
            ("AccessDenied", 403, FailureReason::AwsDenied),
            ("SlowDown", 503, FailureReason::AwsThrottled),
            ("InternalError", 500, FailureReason::AwsError),
        ] {
            let f = classify(&s3_err(code, status));
            assert_eq!(f.reason, reason, "{code}: {f}");
            assert!(f.detail.starts_with(code), "{f}");
        }
        for (code, reason) in [
            ("AuthFailure", FailureReason::AwsAuth),
            ("UnauthorizedOperation", FailureReason::AwsDenied),
            ("RequestLimitExceeded", FailureReason::AwsThrottled),
            ("UnrecognizedClientException", FailureReason::AwsAuth),
            ("InvalidParameterValue", FailureReason::AwsError),
        ] {
            assert_eq!(classify(&ec2_err(code, 400)).reason, reason, "{code}");
        }
    }

    #[test]
    fn status_alone_decides_when_there_is_no_code() {
        assert_eq!(reason_for_code(None, Some(403)), FailureReason::AwsDenied);
        assert_eq!(
            reason_for_code(None, Some(429)),
            FailureReason::AwsThrottled
        );
        assert_eq!(reason_for_code(None, Some(401)), FailureReason::AwsAuth);
        assert_eq!(reason_for_code(None, Some(500)), FailureReason::AwsError);
    }

    #[test]
    fn network_failures_come_from_the_source_chain() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e: SdkError<ListBucketsError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        assert_eq!(classify(&e).reason, FailureReason::Refused);

        let carried = CarriedFailure(Failure::new(FailureReason::Nodata, "no AAAA"));
        let e: SdkError<ListBucketsError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(carried)));
        assert_eq!(classify(&e).reason, FailureReason::Nodata);

        let cert = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, cert);
        let e: SdkError<ListBucketsError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::other(Box::new(io), None));
        assert_eq!(classify(&e).reason, FailureReason::CertInvalid);

        let e: SdkError<ListBucketsError, HttpResponse> = SdkError::timeout_error("slow");
        assert_eq!(classify(&e).reason, FailureReason::Timeout);

        let e: SdkError<ListBucketsError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::other(
                "failed to load credentials: no providers in chain".into(),
                None,
            ));
        assert_eq!(classify(&e).reason, FailureReason::AwsAuth);
    }
}
