//! The settings of what statuswatch keeps about requests themselves, beside
//! the per-tenant tallies: `[route_tally]` (responses by route) and
//! `[failures]` (the last failing requests on the admin listener), with
//! their plain checks. Matching the templates is validated by building the
//! route table (`route::RouteTable`).

use super::*;

/// Ceiling of `route_tally.max_routes`.
pub const MAX_ROUTES_CEILING: usize = 10_000;

/// Headers whose value is a credential: never a request id.
const SECRET_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "set-cookie",
];

/// `[route_tally]`: `statuswatch_route_responses_total{route, class, origin}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteTallyConfig {
    pub enabled: bool,
    /// Labels for paths no template matches, taken in order of first sight;
    /// past it they count as `__other__`. Read at start-up.
    pub max_routes: usize,
    /// The API's endpoints; the most specific match names the route.
    #[serde(default)]
    pub routes: Vec<RouteTemplate>,
}

/// One `[[route_tally.routes]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteTemplate {
    /// `GET`, `POST`, ...; empty = any method.
    #[serde(default)]
    pub method: String,
    /// A path template: `/api/v2/customers/{id}`, `/files/{*rest}`.
    pub path: String,
}

/// `[failures]`: `GET /failures` on the admin listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FailuresConfig {
    pub enabled: bool,
    /// The request header whose value is shown as the request id (empty = none).
    pub request_id_header: String,
}

impl Config {
    /// Checks of `[route_tally]` and `[failures]`.
    pub(super) fn validate_requests(&self) -> Result<(), ConfigError> {
        let r = &self.route_tally;
        if r.max_routes == 0 || r.max_routes > MAX_ROUTES_CEILING {
            return Err(ConfigError::invalid(
                "route_tally.max_routes",
                format!("must be within 1..={MAX_ROUTES_CEILING}"),
            ));
        }
        let h = self.failures.request_id_header.trim();
        if !h.is_empty() {
            let name = http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                ConfigError::invalid(
                    "failures.request_id_header",
                    format!("not a header name: {h:?}"),
                )
            })?;
            let tenant_key = self.tenant.header.to_ascii_lowercase();
            if SECRET_HEADERS.contains(&name.as_str()) || name.as_str() == tenant_key {
                return Err(ConfigError::invalid(
                    "failures.request_id_header",
                    format!("{h:?} is not a request id (a credential or the tenant header)"),
                ));
            }
        }
        Ok(())
    }

    /// `failures.request_id_header` parsed (`None` when empty).
    pub fn request_id_header(&self) -> Option<http::HeaderName> {
        http::HeaderName::from_bytes(self.failures.request_id_header.trim().as_bytes()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_name_their_key() {
        let mut c = Config::defaults().unwrap();
        assert_eq!(c.route_tally.max_routes, 200);
        assert!(c.route_tally.enabled && c.failures.enabled);
        assert_eq!(c.request_id_header().unwrap().as_str(), "x-request-id");
        for bad in [0, MAX_ROUTES_CEILING + 1] {
            c.route_tally.max_routes = bad;
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with("route_tally.max_routes: "), "{e}");
        }
        c.route_tally.max_routes = 10;
        for bad in ["X-Api-Key", "Authorization", "x-tenant-name", "bad header"] {
            c.failures.request_id_header = bad.into();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with("failures.request_id_header: "), "{e}");
        }
        c.failures.request_id_header = String::new();
        c.validate().unwrap();
        assert!(c.request_id_header().is_none());
    }
}
