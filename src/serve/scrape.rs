//! `GET /metrics`: the exposition streamed as a chunked body, each chunk rendered only when hyper
//! asks for the next one, that is when the client has taken the one before (see
//! `report::exposition`). A scraper that never reads holds one chunk, not the whole body.

use std::convert::Infallible;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use hyper::body::{Bytes, Frame};
use prometheus_client::registry::Registry;

use super::{Served, negotiate};
use crate::agent::Agent;
use crate::report::exposition::Exposition;

/// The agent's registry, held through the agent for as long as the scrape lasts.
struct AgentRegistry(Arc<Agent>);

impl Deref for AgentRegistry {
    type Target = Registry;
    fn deref(&self) -> &Registry {
        &self.0.registry
    }
}

/// The body: one data frame per chunk.
struct Chunks(Exposition<AgentRegistry>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        // A chunk is tens of microseconds of work: rendered right here, on the runtime. An
        // empty one would read as the end of a chunked body; none is sent.
        let exposition = &mut self.get_mut().0;
        loop {
            match exposition.next_chunk() {
                Some(chunk) if chunk.is_empty() => continue,
                Some(chunk) => return Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk))))),
                None => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_done()
    }
}

pub(super) async fn metrics(State(served): State<Arc<Served>>, headers: HeaderMap) -> Response {
    let format = negotiate(&headers);
    let agent = Arc::clone(&served.agent);
    let series = agent.metrics.checks.clone();
    let body = Chunks(Exposition::new(AgentRegistry(agent), series, format));
    (
        [(header::CONTENT_TYPE, format.content_type())],
        Body::new(body),
    )
        .into_response()
}
