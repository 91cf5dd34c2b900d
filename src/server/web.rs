//! What `--http` serves: the routes of the JSON API (api.rs renders it), Prometheus
//! `/metrics` and the dashboard page, as one [`Handler`] for the HTTP server in src/http/.
//! docs/http.md lists every route and field.
//!
//! Must not: block on anything a client controls, or hold a registry lock while rendering
//! (every renderer works on a copy).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{accounting::Accounting, api, live::Registry};
use crate::export::metrics::Metrics;
use crate::http::{Handler, Request, Response, DASHBOARD};

/// The routes, over what a running server shares. `gauges` gives (active sessions, UDP
/// ports in use) for `/metrics`.
pub fn handler(
    live: Arc<Registry>,
    accounting: Arc<Accounting>,
    metrics: Arc<Metrics>,
    gauges: impl Fn() -> (u64, u64) + Send + Sync + 'static,
) -> Handler {
    let since = Instant::now();
    Arc::new(move |r: &Request| match r.path.as_str() {
        "/" | "/index.html" => Response::html(DASHBOARD),
        "/api/sessions" => Response::json(api::sessions(&live, SystemTime::now())),
        "/api/history" => Response::json(api::history(&live)),
        "/api/quotas" => Response::json(api::quotas(&accounting.quota_rows(SystemTime::now()))),
        "/api/summary" => Response::json(api::summary(&live, since.elapsed().as_secs_f64())),
        "/metrics" => {
            let (active, ports) = gauges();
            Response {
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                ..Response::text(200, metrics.render(active, ports))
            }
        }
        _ => Response::not_found(),
    })
}
