//! The routes of protocol v1 and the middleware around them.

mod activation;
pub(crate) mod commit;
mod dev;
mod devices;
mod health;
mod rate_limit;
mod uploads;

pub(crate) use devices::sweep_unactivated_every;

use apoyo_sync::wire::{Reason, routes, tus};
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, options, post, put};

use crate::auth;
use crate::config::{Injected, Route};
use crate::error::ApiError;
use crate::http::cbor;
use crate::state::AppState;

const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
const TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");

/// The endpoint's router.
pub fn router(state: AppState) -> Router {
    let mut r = Router::new()
        .route(routes::REGISTER, post(devices::register))
        .route(routes::ACTIVATE, post(activation::activate))
        .route(routes::PROCESSES, get(processes))
        .route(
            routes::UPLOADS,
            options(uploads::options).post(uploads::create),
        )
        .route(
            "/v1/uploads/{id}",
            axum::routing::head(uploads::head)
                .patch(uploads::patch)
                .delete(uploads::delete),
        )
        .route("/v1/supports/{capture_id}", put(commit::commit))
        .route(health::HEALTH, get(health::health))
        .route(health::READY, get(health::ready));
    if state.inner().cfg.dev {
        r = r
            .route("/v1/dev/mailbox/{email}", get(dev::mailbox))
            .route(routes::ADMIN_STATS, get(dev::stats));
    }
    let routed = r
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), chaos))
        .layer(middleware::from_fn(common))
        .with_state(state);
    // The method override is applied before the routes are matched.
    Router::new()
        .fallback_service(routed)
        .layer(middleware::from_fn(method_override))
}

const METHOD_OVERRIDE: HeaderName = HeaderName::from_static("x-http-method-override");

/// tus core: a `POST` to an upload with `X-HTTP-Method-Override: PATCH` (or `DELETE`) is that
/// request, for clients behind proxies that only pass `GET` and `POST`.
async fn method_override(mut req: Request, next: Next) -> Response {
    let upload = req.uri().path().starts_with("/v1/uploads/");
    if upload && req.method() == Method::POST {
        let wanted = req
            .headers()
            .get(METHOD_OVERRIDE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_uppercase());
        match wanted.as_deref() {
            Some("PATCH") => *req.method_mut() = Method::PATCH,
            Some("DELETE") => *req.method_mut() = Method::DELETE,
            _ => {}
        }
    }
    next.run(req).await
}

async fn processes(State(st): State<AppState>) -> Response {
    cbor(200, st.inner().catalog.clone())
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::with_status(405, Reason::Other, "method not allowed on this route")
}

/// The route a request is for, as the chaos hook knows it.
fn classify(method: &Method, path: &str) -> Option<Route> {
    let upload = path
        .strip_prefix("/v1/uploads/")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
    let route = match (method.as_str(), path) {
        ("POST", routes::REGISTER) => Route::Register,
        ("POST", routes::ACTIVATE) => Route::Activate,
        ("GET", routes::PROCESSES) => Route::Processes,
        ("OPTIONS", routes::UPLOADS) => Route::UploadOptions,
        ("POST", routes::UPLOADS) => Route::UploadCreate,
        ("HEAD", _) if upload => Route::UploadHead,
        ("PATCH", _) if upload => Route::UploadPatch,
        ("DELETE", _) if upload => Route::UploadDelete,
        ("PUT", p)
            if p.strip_prefix("/v1/supports/")
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/')) =>
        {
            Route::Commit
        }
        (_, p) if p.starts_with("/v1/dev/") || p.starts_with("/v1/admin/") => Route::Dev,
        _ => return None,
    };
    Some(route)
}

/// Consults the chaos hook, if configured; an injected status is answered without doing
/// anything else.
async fn chaos(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(hook) = st.inner().cfg.chaos.clone() else {
        return next.run(req).await;
    };
    let Some(route) = classify(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let device = auth::peek(&st, req.headers()).await;
    match hook.before(route, device.as_ref().map(|d| d.id.as_str())) {
        None => next.run(req).await,
        Some(Injected::Status {
            status,
            retry_after_secs,
        }) => {
            let reason = match status {
                429 => Reason::RateLimited,
                503 => Reason::Unavailable,
                _ => Reason::Other,
            };
            tracing::debug!(?route, status, "chaos: injected answer");
            let mut e = ApiError::with_status(status, reason, "injected by the chaos hook");
            e.retry_after = retry_after_secs.map(u64::from);
            e.into_response()
        }
    }
}

/// Headers every answer carries, and the access log (method, route template and status only:
/// never a path, which may hold an email, nor a body).
async fn common(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let tus_route =
        req.uri().path() == routes::UPLOADS || req.uri().path().starts_with("/v1/uploads/");
    let mut resp = next.run(req).await;
    if tus_route {
        let h = resp.headers_mut();
        h.insert(TUS_RESUMABLE, HeaderValue::from_static(tus::RESUMABLE));
        if resp.status() == StatusCode::PRECONDITION_FAILED {
            // tus: a version refusal names the versions this server speaks.
            resp.headers_mut()
                .insert(TUS_VERSION, HeaderValue::from_static(tus::RESUMABLE));
        }
    }
    let status = resp.status().as_u16();
    let route = route.as_deref().unwrap_or("(unrouted)");
    if resp.status().is_server_error() {
        tracing::warn!(%method, route, status, "answered");
    } else {
        tracing::debug!(%method, route, status, "answered");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified_for_chaos() {
        let id = "/v1/uploads/0123456789abcdef0123456789abcdef";
        assert_eq!(
            classify(&Method::POST, "/v1/devices"),
            Some(Route::Register)
        );
        assert_eq!(
            classify(&Method::POST, "/v1/devices/activate"),
            Some(Route::Activate)
        );
        assert_eq!(
            classify(&Method::GET, "/v1/processes"),
            Some(Route::Processes)
        );
        assert_eq!(
            classify(&Method::OPTIONS, "/v1/uploads"),
            Some(Route::UploadOptions)
        );
        assert_eq!(
            classify(&Method::POST, "/v1/uploads"),
            Some(Route::UploadCreate)
        );
        assert_eq!(classify(&Method::HEAD, id), Some(Route::UploadHead));
        assert_eq!(classify(&Method::PATCH, id), Some(Route::UploadPatch));
        assert_eq!(classify(&Method::DELETE, id), Some(Route::UploadDelete));
        assert_eq!(
            classify(&Method::PUT, "/v1/supports/x"),
            Some(Route::Commit)
        );
        assert_eq!(classify(&Method::GET, "/v1/admin/stats"), Some(Route::Dev));
        assert_eq!(classify(&Method::GET, "/nowhere"), None);
    }
}
