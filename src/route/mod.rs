//! Routes: which of the API's endpoints a request was for, for
//! `statuswatch_route_responses_total{route, class, origin}` (no tenant) and
//! the failures page.
//!
//! * [`RouteTable`]: the templates of `[route_tally]`, built once per config
//!   by `state::Live::build` (which refuses clashing ones, naming the key),
//!   and the lookup of one request: an exact template by hash, then
//!   templates with parameters through matchit; else the normalized path;
//! * [`normalize`]: a path no template matches, with its ids folded;
//! * [`tally`]: the process-wide counters per route label, capped.
//!
//! A request's route is resolved once, in `Shared::record`. A matched route
//! costs a hash lookup or a matchit walk and allocates nothing (templates
//! have at most 3 parameters, what matchit keeps on the stack; exact
//! templates never enter matchit). One case does: matchit remembers, in a
//! `Vec`, a parameter it skipped for a static segment of another template
//! with parameters (`/a/{id}/x` beside `/a/export/{f}`, for a path under
//! `/a/export/`). An unmatched route is normalized on the stack and found in
//! a lock-free map.

pub mod normalize;
pub mod tally;

use std::collections::HashMap;

use crate::config::{Config, ConfigError};
pub use normalize::{method_label, normalize, Normalized};
pub use tally::{RouteRef, RouteTally, CLASSES, MAX_TEMPLATE_LABELS, OTHER};

/// Parameters a template may have (matchit keeps up to 3 on the stack).
pub const MAX_PARAMS: usize = 3;

/// Method slots: the nine standard methods, then "any method".
const METHODS: usize = 10;
const ANY: usize = 9;

fn method_index(m: &http::Method) -> usize {
    match *m {
        http::Method::GET => 0,
        http::Method::HEAD => 1,
        http::Method::POST => 2,
        http::Method::PUT => 3,
        http::Method::DELETE => 4,
        http::Method::PATCH => 5,
        http::Method::OPTIONS => 6,
        http::Method::CONNECT => 7,
        http::Method::TRACE => 8,
        _ => ANY,
    }
}

/// One template as configured, with its label.
#[derive(Debug, Clone)]
pub struct Template {
    /// `METHOD /path`, or `/path` without a method.
    pub label: String,
    pub path: String,
}

/// The route of one request.
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    /// Where it is counted ([`RouteRef::NONE`] with the tally off).
    pub slot: RouteRef,
    /// The template it matched, if any (an index into [`RouteTable::templates`]).
    pub template: Option<u32>,
}

/// The templates of one config, and where each is counted.
#[derive(Debug, Default)]
pub struct RouteTable {
    enabled: bool,
    templates: Vec<Template>,
    /// Exact templates: path → template per method slot.
    exact: HashMap<Box<str>, [Option<u32>; METHODS], foldhash::fast::RandomState>,
    /// Templates with parameters, per method slot.
    params: [Option<matchit::Router<u32>>; METHODS],
    /// Template index → tally slot, set by [`RouteTable::bind`].
    slots: Vec<RouteRef>,
}

impl RouteTable {
    /// The table of `config.route_tally`. Errors name
    /// `route_tally.routes[i].method` or `.path`.
    pub fn from_config(config: &Config) -> Result<RouteTable, ConfigError> {
        let rt = &config.route_tally;
        if rt.routes.len() > MAX_TEMPLATE_LABELS {
            return Err(ConfigError::invalid(
                "route_tally.routes",
                format!("at most {MAX_TEMPLATE_LABELS} templates"),
            ));
        }
        let mut table = RouteTable {
            enabled: rt.enabled,
            ..RouteTable::default()
        };
        // Every template goes into a router of its method for matchit's
        // checks (syntax, clashes); the exact ones are then looked up by hash.
        let mut check: [matchit::Router<u32>; METHODS] = Default::default();
        for (i, t) in rt.routes.iter().enumerate() {
            let key = |field: &str| format!("route_tally.routes[{i}].{field}");
            let method = t.method.trim().to_ascii_uppercase();
            let m = if method.is_empty() {
                ANY
            } else {
                let parsed = http::Method::from_bytes(method.as_bytes())
                    .ok()
                    .map(|m| method_index(&m))
                    .filter(|&m| m != ANY);
                parsed.ok_or_else(|| {
                    ConfigError::invalid(
                        key("method"),
                        format!("not a standard method: {method:?}"),
                    )
                })?
            };
            let path = t.path.trim();
            if !path.starts_with('/') {
                return Err(ConfigError::invalid(
                    key("path"),
                    format!("must start with '/', got {path:?}"),
                ));
            }
            let params = path.matches('{').count();
            if params > MAX_PARAMS || path.contains("{{") || path.contains("}}") {
                return Err(ConfigError::invalid(
                    key("path"),
                    format!("at most {MAX_PARAMS} parameters (and no escaped braces): {path:?}"),
                ));
            }
            let index = i as u32;
            check[m]
                .insert(path, index)
                .map_err(|e| ConfigError::invalid(key("path"), format!("{path:?}: {e}")))?;
            if params == 0 {
                let entry = table.exact.entry(path.into()).or_insert([None; METHODS]);
                entry[m] = Some(index);
            } else {
                table.params[m]
                    .get_or_insert_with(matchit::Router::new)
                    .insert(path, index)
                    .map_err(|e| ConfigError::invalid(key("path"), format!("{path:?}: {e}")))?;
            }
            table.templates.push(Template {
                label: if m == ANY {
                    path.to_string()
                } else {
                    format!("{method} {path}")
                },
                path: path.to_string(),
            });
        }
        Ok(table)
    }

    /// Give each template its slot in `tally` (start-up and each reload,
    /// before the table is used).
    pub fn bind(&mut self, tally: &RouteTally) {
        self.slots = self
            .templates
            .iter()
            .map(|t| tally.template(&t.label))
            .collect();
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// The template a request matches, most specific first: an exact path
    /// (of its method, then of any method), then a template with
    /// parameters (of its method, then of any), matchit preferring static
    /// segments to parameters.
    #[inline]
    pub fn matching(&self, method: &http::Method, path: &str) -> Option<u32> {
        if self.templates.is_empty() {
            return None;
        }
        let m = method_index(method);
        if let Some(e) = self.exact.get(path) {
            if let Some(i) = e[m].or(e[ANY]) {
                return Some(i);
            }
        }
        [m, ANY]
            .into_iter()
            .filter_map(|m| self.params[m].as_ref())
            .find_map(|r| r.at(path).ok().map(|hit| *hit.value))
    }

    /// Where a request for `method path` is counted: its template's slot,
    /// else its normalized path's (or `__other__` past the cap).
    #[inline]
    pub fn resolve(&self, tally: &RouteTally, method: &http::Method, path: &str) -> Resolved {
        if !self.enabled {
            return Resolved {
                slot: RouteRef::NONE,
                template: None,
            };
        }
        if let Some(i) = self.matching(method, path) {
            let slot = self.slots.get(i as usize).copied();
            return Resolved {
                slot: slot.unwrap_or(RouteRef::OTHER),
                template: Some(i),
            };
        }
        Resolved {
            slot: tally.normalized(normalize(method, path).label()),
            template: None,
        }
    }

    /// Where an answer to a head that could not be parsed is counted.
    pub fn unparsed(&self) -> RouteRef {
        if self.enabled {
            RouteRef::OTHER
        } else {
            RouteRef::NONE
        }
    }
}

#[cfg(test)]
mod tests;
