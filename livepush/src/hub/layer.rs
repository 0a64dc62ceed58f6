//! The tower layer that makes a hub reachable from livepush handlers: [`HubLayer`], made by
//! [`Hub::layer`].

use std::task::{Context, Poll};

use axum::extract::Extension;
use axum::http::Request;
use axum::middleware::AddExtension;
use tower_layer::Layer;
use tower_service::Service;

use crate::hub::Hub;

/// Adds a [`Hub`] to every request of the routes it wraps; see [`Hub::layer`].
#[derive(Clone, Debug)]
pub struct HubLayer {
    hub: Hub,
}

impl HubLayer {
    pub(crate) fn new(hub: Hub) -> Self {
        HubLayer { hub }
    }
}

impl<S> Layer<S> for HubLayer {
    type Service = HubService<S>;

    fn layer(&self, inner: S) -> HubService<S> {
        HubService {
            inner: Extension(self.hub.clone()).layer(inner),
        }
    }
}

/// A service whose requests carry the hub ([`HubLayer`]).
#[derive(Clone, Debug)]
pub struct HubService<S> {
    inner: AddExtension<S, Hub>,
}

impl<S, B> Service<Request<B>> for HubService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner.call(req)
    }
}
