//! One Lambda function may be invoked over HTTP and by schedules. The event is classified first;
//! HTTP events go through `lambda_http`'s own adapter, so API Gateway 2.0, 1.0 and function URL
//! events are all answered in the shape their origin expects.

use lambda_http::{lambda_runtime::Diagnostic, Error, LambdaEvent};
use lambda_http::{request::LambdaRequest, tower::Service, Adapter, Body, Request, Response};
use serde_json::Value;
use std::future::Future;

/// A classified event.
pub enum Invocation {
    Http(Box<LambdaRequest>),
    Other(Value),
}

impl Invocation {
    pub fn classify(event: Value) -> Self {
        let is_http = event.get("requestContext").is_some()
            && (event.get("httpMethod").is_some() || event.get("routeKey").is_some() || event.get("rawPath").is_some());
        if is_http {
            match serde_json::from_value::<LambdaRequest>(event.clone()) {
                Ok(request) => return Self::Http(Box::new(request)),
                Err(e) => tracing::warn!(error = %e, "event looks like HTTP but does not parse as one"),
            }
        }
        Self::Other(event)
    }
}

/// Runs `http` for HTTP events and `other` for the rest, returning the JSON the runtime sends back,
/// or the diagnostic it reports.
pub async fn handle_invocation<H, HF, O, OF>(event: LambdaEvent<Value>, http: H, other: O) -> Result<Value, Diagnostic>
where
    H: Fn(Request) -> HF + Send,
    HF: Future<Output = Response<Body>> + Send,
    O: FnOnce(Value) -> OF,
    OF: Future<Output = Result<Value, Diagnostic>>,
{
    let (payload, context) = event.into_parts();
    match Invocation::classify(payload) {
        Invocation::Http(request) => {
            let service = lambda_http::service_fn(|req: Request| {
                let fut = http(req);
                async move { Ok::<_, Error>(fut.await) }
            });
            let mut adapter: Adapter<'_, _, _> = Adapter::from(service);
            let response = adapter.call(LambdaEvent::new(*request, context)).await.map_err(Diagnostic::from)?;
            serde_json::to_value(response).map_err(|e| Diagnostic::from(Error::from(e)))
        }
        Invocation::Other(value) => other(value).await,
    }
}
